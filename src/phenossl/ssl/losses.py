"""Self-supervised losses as pure functions of embeddings.

Each function takes the embeddings of a batch (and, where the method needs them, a queue, a
centre or cluster assignments) and returns a scalar tensor. Stop-gradients that belong to the
loss's definition (BYOL/SimSiam targets, DINO's teacher, ReSSL's key distribution, SwAV and
DeepClusterV2 codes) are applied here, so a caller cannot forget them. Stateful updates (queues,
the DINO centre, k-means) live in :mod:`phenossl.ssl.memory` and :mod:`phenossl.ssl.methods`.

All losses compute in float32 (float64 inputs stay float64), also inside an autocast region:
low-precision logits would blur the temperature-scaled similarities.

Notation: ``N`` batch size, ``D`` embedding size, ``K`` queue length or number of prototypes,
``u = x / ||x||`` an L2-normalised vector, ``tau`` a temperature.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "barlow_twins_loss",
    "byol_loss",
    "covariance_term",
    "deepclusterv2_loss",
    "dino_center_update",
    "dino_loss",
    "invariance_term",
    "moco_loss",
    "nnclr_loss",
    "normalized_covariance_term",
    "nt_xent_loss",
    "ressl_loss",
    "simsiam_loss",
    "sinkhorn",
    "swav_loss",
    "variance_covariance_loss",
    "variance_term",
    "vibcreg_loss",
    "vicreg_loss",
]


_F = TypeVar("_F", bound=Callable[..., Any])
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.dtype in _LOW_PRECISION else value
    if isinstance(value, list | tuple):
        return type(value)(_upcast(v) for v in value)
    return value


def _first_tensor(values: Sequence[Any]) -> Tensor | None:
    for value in values:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, list | tuple) and (found := _first_tensor(value)) is not None:
            return found
    return None


def _float32(fn: _F) -> _F:
    """Compute a loss in (at least) float32, also inside an autocast region.

    Under bf16 autocast a cosine of 0.99 is only resolved to ~0.004, i.e. ~0.06 in a logit
    divided by a temperature of 0.07; the losses are cheap next to the backbone, so they run in
    full precision.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        first = _first_tensor([*args, *kwargs.values()])
        context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if first is not None and torch.is_autocast_enabled(first.device.type):
            context = torch.autocast(first.device.type, enabled=False)
        with context:
            return fn(*_upcast(args), **{k: _upcast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{names}: expected two (N, D) tensors of equal shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_bank(query: Tensor, bank: Tensor, names: str) -> None:
    if bank.ndim != 2 or bank.shape[1] != query.shape[1]:
        raise ValueError(f"{names}: expected a (K, {query.shape[1]}) bank, got {tuple(bank.shape)}")


def _off_diagonal(matrix: Tensor) -> Tensor:
    n = matrix.shape[0]
    return matrix.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


# ------------------------------------------------------------------------------------------------
# Contrastive losses
# ------------------------------------------------------------------------------------------------


@_float32
def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """SimCLR's normalised temperature-scaled cross entropy (NT-Xent).

    Chen et al., "A simple framework for contrastive learning of visual representations",
    ICML 2020. With the ``2N`` normalised embeddings ``u`` of both views and ``j(i)`` the other
    view of sample ``i``::

        l_i = -log( exp(u_i . u_j(i) / tau) / sum_{k != i} exp(u_i . u_k / tau) ),
        loss = mean_i l_i  over all 2N anchors.

    Parameters
    ----------
    z1, z2
        ``(N, D)`` projections of the two views (normalised here).
    temperature
        ``tau``.

    Examples
    --------
    Views that agree give a lower loss than unrelated ones:

    >>> g = torch.Generator().manual_seed(0)
    >>> z1, noise = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    >>> bool(nt_xent_loss(z1, z1) < nt_xent_loss(z1, noise))
    True
    """
    _check_pair(z1, z2, "nt_xent_loss(z1, z2)")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.t() / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


@_float32
def moco_loss(query: Tensor, key: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """InfoNCE with a queue of negatives (MoCo v2).

    He et al., CVPR 2020; Chen et al., "Improved baselines with momentum contrastive learning",
    2020. With normalised query ``q``, its positive key ``k`` and queued keys ``n_1..n_K``::

        l = -log( exp(q . k / tau) / (exp(q . k / tau) + sum_j exp(q . n_j / tau)) ),

    averaged over the batch. ``key`` and ``queue`` are targets (no gradient flows into them).

    Parameters
    ----------
    query, key
        ``(N, D)`` online projections and momentum-encoder keys.
    queue
        ``(K, D)`` negatives from earlier batches.
    temperature
        ``tau``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> q, queue = torch.randn(8, 16, generator=g), torch.randn(32, 16, generator=g)
    >>> bool(moco_loss(q, q, queue) < moco_loss(q, torch.randn(8, 16, generator=g), queue))
    True
    """
    _check_pair(query, key, "moco_loss(query, key)")
    _check_bank(query, queue, "moco_loss(queue)")
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach(), dim=1)
    negatives = F.normalize(queue.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ negatives.t()], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)


@_float32
def nnclr_loss(neighbours: Tensor, predictions: Tensor, temperature: float = 0.2) -> Tensor:
    """NNCLR's contrastive loss between support-set neighbours and predictions of the other view.

    Dwibedi et al., "With a little help from my friends: nearest-neighbor contrastive learning of
    visual representations", ICCV 2021 (solo-learn's form). With ``nn_i`` the nearest neighbour of
    view 1 of sample ``i`` and ``p_j`` the prediction for view 2 of sample ``j``::

        l_i = -log( exp(nn_i . p_i / tau) / sum_j exp(nn_i . p_j / tau) ),

    averaged over the batch (vectors normalised). The neighbours come from the support set and
    carry no gradient.
    """
    _check_pair(neighbours, predictions, "nnclr_loss(neighbours, predictions)")
    nn_ = F.normalize(neighbours.detach(), dim=1)
    p = F.normalize(predictions, dim=1)
    logits = nn_ @ p.t() / temperature
    targets = torch.arange(p.shape[0], device=p.device)
    return F.cross_entropy(logits, targets)


@_float32
def ressl_loss(
    query: Tensor,
    key: Tensor,
    queue: Tensor,
    temperature_q: float = 0.1,
    temperature_k: float = 0.04,
) -> Tensor:
    """ReSSL's relational loss: match the query's similarity distribution over the queue to the key's.

    Zheng et al., "ReSSL: relational self-supervised learning with weak augmentation",
    NeurIPS 2021. With normalised query ``q`` (strong view, online), key ``k`` (weak view,
    momentum encoder) and queue ``n_1..n_K``::

        p_j = softmax_j(k . n_j / tau_k)   (target, no gradient)
        l   = -sum_j p_j log softmax_j(q . n_j / tau_q),

    averaged over the batch. ``tau_k < tau_q`` sharpens the target.
    """
    _check_pair(query, key, "ressl_loss(query, key)")
    _check_bank(query, queue, "ressl_loss(queue)")
    bank = F.normalize(queue.detach(), dim=1)
    logits_q = F.normalize(query, dim=1) @ bank.t()
    logits_k = F.normalize(key.detach(), dim=1) @ bank.t()
    target = F.softmax(logits_k / temperature_k, dim=1)
    return -(target * F.log_softmax(logits_q / temperature_q, dim=1)).sum(dim=1).mean()


# ------------------------------------------------------------------------------------------------
# Redundancy-reduction / variance-covariance losses
# ------------------------------------------------------------------------------------------------


@_float32
def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.0051, scale: float = 0.1) -> Tensor:
    """Barlow Twins' cross-correlation loss.

    Zbontar et al., "Barlow Twins: self-supervised learning via redundancy reduction", ICML 2021.
    Each view is standardised over the batch (mean 0, biased std 1, as a non-affine BatchNorm),
    ``C = z1_std^T z2_std / N`` is their ``(D, D)`` cross-correlation, and::

        loss = scale * ( sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2 ).

    ``scale`` (solo-learn's ``scale_loss``, 0.1 in its CIFAR config) only rescales the gradient.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> z1, noise = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    >>> bool(barlow_twins_loss(z1, z1) < barlow_twins_loss(z1, noise))
    True
    """
    _check_pair(z1, z2, "barlow_twins_loss(z1, z2)")
    n = z1.shape[0]
    a = F.batch_norm(z1, None, None, training=True)
    b = F.batch_norm(z2, None, None, training=True)
    c = a.t() @ b / n
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = _off_diagonal(c).pow(2).sum()
    return scale * (on_diagonal + lambd * off_diagonal)


@_float32
def invariance_term(z1: Tensor, z2: Tensor) -> Tensor:
    """VICReg invariance: mean squared error ``mean((z1 - z2)^2)`` over all entries."""
    _check_pair(z1, z2, "invariance_term(z1, z2)")
    return F.mse_loss(z1, z2)


@_float32
def variance_term(z: Tensor, eps: float = 1e-4) -> Tensor:
    """VICReg variance hinge ``mean_d relu(1 - sqrt(Var(z_d) + eps))`` (unbiased variance).

    Examples
    --------
    Collapsed features (every sample the same) pay the full hinge, spread ones nothing:

    >>> round(float(variance_term(torch.zeros(4, 3))), 4)  # 1 - sqrt(eps)
    0.99
    >>> float(variance_term(10 * torch.randn(100, 3, generator=torch.Generator().manual_seed(0))))
    0.0
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


@_float32
def covariance_term(z: Tensor) -> Tensor:
    """VICReg covariance ``sum_{i != j} Cov(z)_ij^2 / D`` with the unbiased covariance."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.t() @ centred / (n - 1)
    return _off_diagonal(cov).pow(2).sum() / d


@_float32
def normalized_covariance_term(z: Tensor) -> Tensor:
    """VIbCReg's normalised covariance ``sum_{i != j} R_ij^2 / D^2``.

    ``R`` is the correlation matrix: columns of the centred ``z`` are scaled to unit L2 norm
    before ``R = z^T z``, so the term is bounded and does not depend on the feature scale.
    """
    d = z.shape[1]
    centred = F.normalize(z - z.mean(dim=0), dim=0)
    corr = centred.t() @ centred
    return _off_diagonal(corr).pow(2).sum() / (d * d)


@_float32
def variance_covariance_loss(
    z1: Tensor,
    z2: Tensor,
    weights: tuple[float, float, float],
    covariance: Callable[[Tensor], Tensor] = covariance_term,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of the VICReg family and its three unweighted terms (detached, for logging)::

        loss = sim_weight * mse(z1, z2)
             + var_weight * (v(z1) + v(z2))
             + cov_weight * (covariance(z1) + covariance(z2))

    with ``(sim_weight, var_weight, cov_weight) = weights`` and ``v`` = :func:`variance_term`;
    :func:`vicreg_loss` and :func:`vibcreg_loss` are its two ``covariance`` terms.

    Returns
    -------
    loss, terms
        The scalar loss and ``{"invariance", "variance", "covariance"}``.
    """
    _check_pair(z1, z2, "variance_covariance_loss(z1, z2)")
    sim_weight, var_weight, cov_weight = weights
    invariance = invariance_term(z1, z2)
    variance = variance_term(z1) + variance_term(z2)
    cov = covariance(z1) + covariance(z2)
    loss = sim_weight * invariance + var_weight * variance + cov_weight * cov
    terms = {"invariance": invariance, "variance": variance, "covariance": cov}
    return loss, {name: term.detach() for name, term in terms.items()}


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
) -> Tensor:
    """VICReg: variance-invariance-covariance regularisation.

    Bardes, Ponce and LeCun, ICLR 2022 (as implemented in solo-learn)::

        loss = sim_weight * mse(z1, z2)
             + var_weight * (v(z1) + v(z2))
             + cov_weight * (c(z1) + c(z2))

    with ``v`` = :func:`variance_term` and ``c`` = :func:`covariance_term`. Note that solo-learn
    sums the two variance terms where the official code and lightly average them, i.e. this is
    the official loss with ``var_weight`` doubled; we keep solo-learn's form because the paper's
    runs used it.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> z1, noise = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    >>> bool(vicreg_loss(z1, z1) < vicreg_loss(z1, noise))
    True
    """
    _check_pair(z1, z2, "vicreg_loss(z1, z2)")  # named for the caller, not the shared loss
    weights = (sim_weight, var_weight, cov_weight)
    return variance_covariance_loss(z1, z2, weights, covariance_term)[0]


def vibcreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 200.0,
) -> Tensor:
    """VIbCReg: VICReg with a normalised covariance term (and IterNorm in the projector).

    Lee and Aune, "VIbCReg: variance-invariance-better-covariance regularization", 2021::

        loss = sim_weight * mse(z1, z2)
             + var_weight * (v(z1) + v(z2))
             + cov_weight * (r(z1) + r(z2))

    with ``r`` = :func:`normalized_covariance_term`.
    """
    _check_pair(z1, z2, "vibcreg_loss(z1, z2)")  # named for the caller, not the shared loss
    weights = (sim_weight, var_weight, cov_weight)
    return variance_covariance_loss(z1, z2, weights, normalized_covariance_term)[0]


# ------------------------------------------------------------------------------------------------
# Predictive (non-contrastive) losses
# ------------------------------------------------------------------------------------------------


@_float32
def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's normalised mean squared error ``2 - 2 cos(p, sg(z))``, averaged over the batch.

    Grill et al., "Bootstrap your own latent", NeurIPS 2020. ``target`` (the momentum
    projection, or its nearest neighbour for NNBYOL) receives no gradient.

    Examples
    --------
    Only the direction counts: a prediction parallel to its target costs nothing.

    >>> z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    >>> abs(float(byol_loss(z, 3 * z))) < 1e-6, round(float(byol_loss(z, -z)), 4)
    (True, 4.0)
    """
    _check_pair(prediction, target, "byol_loss(prediction, target)")
    return 2.0 - 2.0 * F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


@_float32
def simsiam_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """SimSiam's negative cosine similarity ``-cos(p, sg(z))``, averaged over the batch.

    Chen and He, "Exploring simple siamese representation learning", CVPR 2021.

    Examples
    --------
    >>> z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    >>> round(float(simsiam_loss(z, z)), 4), round(float(simsiam_loss(z, -z)), 4)
    (-1.0, 1.0)
    """
    _check_pair(prediction, target, "simsiam_loss(prediction, target)")
    return -F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


# ------------------------------------------------------------------------------------------------
# Clustering / self-distillation losses
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
@_float32
def sinkhorn(scores: Tensor, iterations: int = 3, epsilon: float = 0.05) -> Tensor:
    """Sinkhorn-Knopp soft assignment of ``N`` samples to ``K`` prototypes (SwAV's codes).

    Caron et al., "Unsupervised learning of visual features by contrasting cluster assignments",
    NeurIPS 2020. Starting from ``Q = exp(scores / epsilon)``, rows (prototypes) and columns
    (samples) are alternately rescaled towards the uniform marginals (each prototype gets
    ``N / K`` of the mass, each sample 1). Computed in at least float32, without gradient.

    Parameters
    ----------
    scores
        ``(N, K)`` sample-prototype similarities.
    iterations
        Number of row/column normalisation rounds (3 in SwAV).
    epsilon
        Entropy regularisation (0.05).

    Returns
    -------
    Tensor
        ``(N, K)`` assignments; each row sums to 1 exactly and each column to about ``N / K``.

    Examples
    --------
    >>> codes = sinkhorn(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)))
    >>> codes.shape, bool(torch.allclose(codes.sum(dim=1), torch.ones(6)))
    (torch.Size([6, 3]), True)
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn: expected (N, K) scores, got {tuple(scores.shape)}")
    if iterations < 1:
        raise ValueError(f"sinkhorn: iterations must be >= 1, got {iterations}")
    # Subtracting the max is a no-op after normalisation but keeps exp() finite.
    q = torch.exp((scores - scores.max()) / epsilon).t()  # (K, N)
    n_prototypes, n_samples = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= n_samples
    q *= n_samples
    return q.t()


@_float32
def swav_loss(
    scores: Sequence[Tensor], assignments: Sequence[Tensor], temperature: float = 0.1
) -> Tensor:
    """SwAV's swapped prediction loss.

    Caron et al., NeurIPS 2020. With ``q_s`` the Sinkhorn codes of view ``s`` and ``p_t`` the
    prototype scores of view ``t``::

        loss = mean_{s != t} [ -mean_n sum_k q_s[n, k] log softmax_k(p_t[n] / tau) ].

    Parameters
    ----------
    scores
        One ``(N, K)`` tensor of prototype scores per view.
    assignments
        One ``(N, K)`` code tensor per view (e.g. from :func:`sinkhorn`); treated as targets.
    temperature
        ``tau``.
    """
    if len(scores) != len(assignments) or len(scores) < 2:
        raise ValueError(
            "swav_loss: expected as many assignment tensors as score tensors (at least 2), got "
            f"{len(scores)} and {len(assignments)}"
        )
    terms = [
        -(assignments[s].detach() * F.log_softmax(scores[t] / temperature, dim=1)).sum(1).mean()
        for s in range(len(scores))
        for t in range(len(scores))
        if s != t
    ]
    return torch.stack(terms).mean()


@_float32
def dino_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    center: Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.07,
) -> Tensor:
    """DINO's self-distillation cross entropy between teacher and student views.

    Caron et al., "Emerging properties in self-supervised vision transformers", ICCV 2021::

        P_t = softmax((g_t - c) / tau_t)      (teacher, centred and sharpened; no gradient)
        loss = mean_{s != t} [ -mean_n sum_k P_t[n, k] log softmax_k(g_s[n] / tau_s) ]

    Parameters
    ----------
    student, teacher
        One ``(N, K)`` logit tensor per view from the student and the teacher.
    center
        ``(K,)`` or ``(1, K)`` running centre of the teacher logits (see
        :func:`dino_center_update`).
    student_temperature, teacher_temperature
        ``tau_s`` and ``tau_t``.
    """
    if len(student) != len(teacher) or len(student) < 2:
        raise ValueError(
            "dino_loss: expected as many student as teacher views (at least 2), got "
            f"{len(student)} and {len(teacher)}"
        )
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=-1) for t in teacher]
    log_probs = [F.log_softmax(s / student_temperature, dim=-1) for s in student]
    terms = [
        -(targets[t] * log_probs[s]).sum(dim=-1).mean()
        for t in range(len(teacher))
        for s in range(len(student))
        if s != t
    ]
    return torch.stack(terms).mean()


@torch.no_grad()
@_float32
def dino_center_update(center: Tensor, teacher: Sequence[Tensor], momentum: float = 0.9) -> Tensor:
    """New DINO centre ``m * c + (1 - m) * mean(teacher logits over all views and samples)``."""
    batch_center = torch.cat([t.detach() for t in teacher]).mean(dim=0)
    return center * momentum + batch_center.view_as(center) * (1.0 - momentum)


@_float32
def deepclusterv2_loss(scores: Tensor, assignments: Tensor, temperature: float = 0.1) -> Tensor:
    """DeepClusterV2's cross entropy against k-means pseudo-labels, averaged over heads.

    Caron et al., NeurIPS 2020 (DeepCluster-v2, introduced with SwAV). For each head ``h`` with
    prototypes from k-means on the memory bank, the scores of every view are classified into the
    sample's cluster ``a_h[n]``::

        loss = mean_h CE( scores[h, v, n] / tau , a_h[n] )   over views v and samples n,

    skipping samples whose assignment is ``-1`` (not clustered yet). A head with no valid target
    contributes 0 (with a graph, so ``backward`` still works in the first epoch).

    Parameters
    ----------
    scores
        ``(H, V, N, K)`` prototype scores of ``V`` views for ``H`` heads.
    assignments
        ``(H, N)`` integer cluster indices, ``-1`` for unknown.
    temperature
        ``tau``.
    """
    if scores.ndim != 4 or assignments.shape != (scores.shape[0], scores.shape[2]):
        raise ValueError(
            "deepclusterv2_loss: expected scores (H, V, N, K) and assignments (H, N), got "
            f"{tuple(scores.shape)} and {tuple(assignments.shape)}"
        )
    n_heads, n_views, _, n_prototypes = scores.shape
    terms = []
    for h in range(n_heads):
        targets = assignments[h].to(scores.device).repeat(n_views)
        logits = scores[h].reshape(-1, n_prototypes) / temperature
        if bool((targets >= 0).any()):
            terms.append(F.cross_entropy(logits, targets, ignore_index=-1))
        else:
            terms.append(logits.sum() * 0.0)
    return torch.stack(terms).mean()
