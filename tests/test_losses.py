"""SSL losses against lightly (a test-only oracle), hand-computed cases and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from phenossl.ssl import losses as L


@pytest.fixture(scope="module")
def lightly_loss():
    """lightly's losses, the test-only oracle (the oracle tests skip without lightly)."""
    return pytest.importorskip("lightly.loss")


ATOL = 1e-5


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    return _randn(12, 16, seed=1), _randn(12, 16, seed=2)


# ------------------------------------------------------------------------------------------------
# against lightly


@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_nt_xent_matches_lightly(pair, temperature, lightly_loss):
    z1, z2 = pair
    expected = lightly_loss.NTXentLoss(temperature=temperature)(z1, z2)
    assert L.nt_xent_loss(z1, z2, temperature).item() == pytest.approx(expected.item(), abs=ATOL)


def test_moco_loss_matches_lightly_memory_bank(pair, lightly_loss):
    query, key = pair
    queue = F.normalize(_randn(10, 16, seed=3), dim=1)
    oracle = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(10, 16))
    oracle.memory_bank.bank = queue.clone()
    expected = oracle(query, key)
    assert L.moco_loss(query, key, queue, 0.2).item() == pytest.approx(expected.item(), abs=ATOL)


@pytest.mark.parametrize("lambd", [0.0051, 0.1])
def test_barlow_twins_matches_lightly(pair, lambd, lightly_loss):
    z1, z2 = pair
    expected = lightly_loss.BarlowTwinsLoss(lambda_param=lambd)(z1, z2)
    ours = L.barlow_twins_loss(z1, z2, lambd=lambd, scale=1.0)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    # `scale` is a plain factor
    scaled = L.barlow_twins_loss(z1, z2, lambd=lambd, scale=0.1)
    assert scaled.item() == pytest.approx(0.1 * ours.item(), rel=1e-6)


def test_vicreg_matches_lightly_with_doubled_variance_weight(pair, lightly_loss):
    z1, z2 = pair
    # solo-learn (and we) sum the two variance hinges where lightly averages them.
    oracle = lightly_loss.VICRegLoss(lambda_param=25.0, mu_param=50.0, nu_param=1.0)
    expected = oracle(z1, z2)
    assert L.vicreg_loss(z1, z2, 25.0, 25.0, 1.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_vicreg_terms_match_lightly(pair, lightly_loss):
    from lightly.loss import vicreg_loss as oracle

    z1, z2 = pair
    assert L.invariance_term(z1, z2).item() == pytest.approx(
        oracle.invariance_loss(z1, z2).item(), abs=ATOL
    )
    assert L.variance_term(z1).item() == pytest.approx(oracle.variance_loss(z1).item(), abs=ATOL)
    assert L.covariance_term(z1).item() == pytest.approx(
        oracle.covariance_loss(z1).item(), abs=ATOL
    )


def test_byol_and_simsiam_match_lightly_negative_cosine(pair, lightly_loss):
    p, z = pair
    negative_cosine = lightly_loss.NegativeCosineSimilarity()(p, z).item()
    assert L.simsiam_loss(p, z).item() == pytest.approx(negative_cosine, abs=ATOL)
    assert L.byol_loss(p, z).item() == pytest.approx(2.0 + 2.0 * negative_cosine, abs=ATOL)


def test_sinkhorn_matches_lightly(lightly_loss):
    from lightly.loss.swav_loss import sinkhorn as oracle

    scores = (
        F.normalize(_randn(12, 16, seed=4), dim=1) @ F.normalize(_randn(7, 16, seed=5), dim=1).t()
    )
    torch.testing.assert_close(
        L.sinkhorn(scores, 3, 0.05), oracle(scores, 3, 0.05), atol=ATOL, rtol=1e-5
    )


def test_swav_loss_matches_lightly(lightly_loss):
    s1 = F.normalize(_randn(12, 8, seed=6), dim=1) @ F.normalize(_randn(7, 8, seed=7), dim=1).t()
    s2 = F.normalize(_randn(12, 8, seed=8), dim=1) @ F.normalize(_randn(7, 8, seed=7), dim=1).t()
    expected = lightly_loss.SwaVLoss(temperature=0.1)([s1, s2], [])
    codes = [L.sinkhorn(s1), L.sinkhorn(s2)]
    assert L.swav_loss([s1, s2], codes, 0.1).item() == pytest.approx(expected.item(), abs=ATOL)


def test_dino_loss_and_centre_match_lightly(lightly_loss):
    k = 9
    student = [_randn(6, k, seed=10), _randn(6, k, seed=11)]
    teacher = [_randn(6, k, seed=12), _randn(6, k, seed=13)]
    center = 0.1 * _randn(k, seed=14)
    oracle = lightly_loss.DINOLoss(
        output_dim=k,
        warmup_teacher_temp=0.05,
        teacher_temp=0.05,
        student_temp=0.1,
        center_momentum=0.9,
    )
    oracle.center = center.view(1, 1, k).clone()
    expected = oracle(teacher_out=teacher, student_out=student, teacher_temp=0.05)
    ours = L.dino_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.05)
    assert ours.item() == pytest.approx(expected.item(), abs=ATOL)
    torch.testing.assert_close(
        L.dino_center_update(center, teacher, 0.9), oracle.center.view(k), atol=1e-6, rtol=0
    )


# ------------------------------------------------------------------------------------------------
# hand-computed cases


def test_nnclr_loss_hand_computed():
    neighbours = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised inside
    predictions = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    # logits = I / tau; each row: -log(e^(1/tau) / (e^(1/tau) + 1))
    tau = 0.5
    expected = math.log(1.0 + math.exp(-1.0 / tau))
    assert L.nnclr_loss(neighbours, predictions, tau).item() == pytest.approx(expected, abs=1e-6)


def test_ressl_loss_hand_computed():
    query = torch.tensor([[1.0, 0.0]])
    key = torch.tensor([[0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    tq, tk = 0.1, 0.04
    logits_q = np.array([1.0, 0.0, -1.0]) / tq
    logits_k = np.array([0.0, 1.0, 0.0]) / tk
    target = np.exp(logits_k - logits_k.max())
    target /= target.sum()
    log_p = logits_q - logits_q.max() - np.log(np.exp(logits_q - logits_q.max()).sum())
    expected = -(target * log_p).sum()
    assert L.ressl_loss(query, key, queue, tq, tk).item() == pytest.approx(expected, rel=1e-5)


def test_ressl_minimum_is_the_target_entropy():
    queue = F.normalize(_randn(20, 8, seed=20), dim=1)
    key = F.normalize(_randn(4, 8, seed=21), dim=1)
    target = F.softmax(key @ queue.t() / 0.1, dim=1)
    entropy = -(target * target.log()).sum(1).mean()
    # same vectors and temperatures: cross entropy == entropy (its minimum)
    at_minimum = L.ressl_loss(key, key, queue, 0.1, 0.1)
    assert at_minimum.item() == pytest.approx(entropy.item(), abs=1e-5)
    moved = L.ressl_loss(key + 0.3 * _randn(4, 8, seed=22), key, queue, 0.1, 0.1)
    assert moved.item() > at_minimum.item() + 1e-3


def test_normalized_covariance_term_hand_computed():
    correlated = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    # centred columns are parallel: R = [[1, 1], [1, 1]], off-diagonal squares 2, / D^2 = 0.5
    assert L.normalized_covariance_term(correlated).item() == pytest.approx(0.5, abs=1e-6)
    orthogonal = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert L.normalized_covariance_term(orthogonal).item() == pytest.approx(0.0, abs=1e-7)
    z = _randn(10, 5, seed=23)
    assert L.normalized_covariance_term(7.0 * z).item() == pytest.approx(
        L.normalized_covariance_term(z).item(), rel=1e-5
    )


def test_vibcreg_loss_hand_computed():
    # columns orthogonal, unit-variance-or-more, identical views: every term is zero
    z = 2.0 * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert L.vibcreg_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    # shifting one view by 1 only adds the invariance term: 25 * mse = 25
    assert L.vibcreg_loss(z, z + 1.0).item() == pytest.approx(25.0, abs=1e-5)
    # halving the scale puts the std at 1 -> var hinge still 0; at 0.25 scale std = 0.577
    small = 0.25 * z
    std = math.sqrt((small[:, 0] ** 2).sum().item() / 3)
    expected_var = 25.0 * 2 * (1.0 - math.sqrt(std**2 + 1e-4))
    assert L.vibcreg_loss(small, small).item() == pytest.approx(expected_var, rel=1e-5)


def test_deepclusterv2_loss_hand_computed():
    scores = torch.tensor([[[[0.5, -0.5], [0.1, 0.2]], [[0.0, 1.0], [0.3, 0.3]]]])  # (1, 2, 2, 2)
    assignments = torch.tensor([[0, -1]])  # sample 1 not clustered yet
    tau = 0.1

    def nll(row, target):
        logits = np.array(row) / tau
        return -(logits[target] - np.log(np.exp(logits).sum()))

    expected = (nll([0.5, -0.5], 0) + nll([0.0, 1.0], 0)) / 2
    assert L.deepclusterv2_loss(scores, assignments, tau).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_deepclusterv2_loss_without_targets_is_zero_and_backpropagates():
    scores = _randn(2, 2, 3, 4, seed=30).requires_grad_()
    loss = L.deepclusterv2_loss(scores, torch.full((2, 3), -1), 0.1)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros_like(scores))


# ------------------------------------------------------------------------------------------------
# invariants


@pytest.mark.parametrize(
    "loss",
    [
        lambda a, b: L.nt_xent_loss(a, b, 0.2),
        lambda a, b: L.barlow_twins_loss(a, b),
        lambda a, b: L.vicreg_loss(a, b),
        lambda a, b: L.vibcreg_loss(a, b),
    ],
    ids=["nt_xent", "barlow_twins", "vicreg", "vibcreg"],
)
def test_symmetric_under_swapping_views(pair, loss):
    z1, z2 = pair
    assert loss(z1, z2).item() == pytest.approx(loss(z2, z1).item(), rel=1e-5)


def test_swav_and_dino_symmetric_under_swapping_views():
    a, b = _randn(6, 5, seed=40), _randn(6, 5, seed=41)
    ca, cb = L.sinkhorn(a), L.sinkhorn(b)
    assert L.swav_loss([a, b], [ca, cb]).item() == pytest.approx(
        L.swav_loss([b, a], [cb, ca]).item(), abs=1e-6
    )
    c = torch.zeros(5)
    assert L.dino_loss([a, b], [b, a], c).item() == pytest.approx(
        L.dino_loss([b, a], [a, b], c).item(), abs=1e-6
    )


def test_identical_views_have_zero_invariance_and_known_minima():
    z = _randn(32, 6, seed=42)
    assert L.invariance_term(z, z).item() == 0.0
    # Barlow Twins: identical views have C_ii = 1, so only the off-diagonal term remains
    assert L.barlow_twins_loss(z, z, lambd=0.0).item() == pytest.approx(0.0, abs=1e-5)
    # BYOL / SimSiam on identical directions: 0 and -1
    assert L.byol_loss(z, 3.0 * z).item() == pytest.approx(0.0, abs=1e-6)
    assert L.simsiam_loss(z, 3.0 * z).item() == pytest.approx(-1.0, abs=1e-6)


def test_contrastive_losses_are_scale_invariant(pair):
    z1, z2 = pair
    queue = _randn(10, 16, seed=43)
    assert L.nt_xent_loss(3 * z1, 0.5 * z2).item() == pytest.approx(
        L.nt_xent_loss(z1, z2).item(), abs=1e-6
    )
    assert L.moco_loss(3 * z1, z2, 2 * queue).item() == pytest.approx(
        L.moco_loss(z1, z2, queue).item(), abs=1e-6
    )


def test_stop_gradients():
    p = _randn(4, 3, seed=50).requires_grad_()
    z = _randn(4, 3, seed=51).requires_grad_()
    (L.byol_loss(p, z) + L.simsiam_loss(p, z)).backward()
    assert p.grad is not None
    assert z.grad is None

    student = [_randn(4, 5, seed=52).requires_grad_() for _ in range(2)]
    teacher = [_randn(4, 5, seed=53).requires_grad_() for _ in range(2)]
    L.dino_loss(student, teacher, torch.zeros(5)).backward()
    assert all(s.grad is not None for s in student)
    assert all(t.grad is None for t in teacher)

    query = _randn(4, 3, seed=54).requires_grad_()
    key = _randn(4, 3, seed=55).requires_grad_()
    queue = _randn(6, 3, seed=56).requires_grad_()
    (L.moco_loss(query, key, queue) + L.ressl_loss(query, key, queue)).backward()
    assert query.grad is not None
    assert key.grad is None
    assert queue.grad is None


def test_sinkhorn_marginals():
    scores = (
        F.normalize(_randn(40, 8, seed=60), dim=1) @ F.normalize(_randn(5, 8, seed=61), dim=1).t()
    )
    codes = L.sinkhorn(scores, iterations=3)
    # every sample is a distribution over prototypes
    torch.testing.assert_close(codes.sum(1), torch.ones(40), atol=1e-6, rtol=0)
    assert bool((codes >= 0).all())
    # converged: every prototype receives N / K of the mass
    converged = L.sinkhorn(scores, iterations=500)
    torch.testing.assert_close(converged.sum(0), torch.full((5,), 40 / 5), atol=1e-3, rtol=0)
    torch.testing.assert_close(converged.sum(1), torch.ones(40), atol=1e-6, rtol=0)
    # more iterations move the prototype marginals closer to uniform
    gap_3 = (codes.sum(0) - 8).abs().max()
    gap_500 = (converged.sum(0) - 8).abs().max()
    assert gap_500 < gap_3


def test_sinkhorn_does_not_overflow_on_large_scores():
    # exp(5 / 0.05) = exp(100) overflows float32; the result must match a float64 reference
    scores = torch.tensor([[5.0, -5.0], [4.0, 4.5], [4.8, 4.9]])
    reference = L.sinkhorn(scores.double(), iterations=3, epsilon=0.05)
    codes = L.sinkhorn(scores, iterations=3, epsilon=0.05)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes, reference.float(), atol=1e-6, rtol=1e-5)


def test_losses_run_in_float32_under_autocast(pair):
    z1, z2 = pair
    queue = _randn(10, 16, seed=70)
    cases = {
        "nt_xent": lambda a, b: L.nt_xent_loss(a, b, 0.07),
        "moco": lambda a, b: L.moco_loss(a, b, queue, 0.07),
        "barlow": L.barlow_twins_loss,
        "vicreg": L.vicreg_loss,
        "swav": lambda a, b: L.swav_loss([a, b], [L.sinkhorn(b), L.sinkhorn(a)]),
    }
    for name, loss in cases.items():
        reference = loss(z1, z2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = loss(z1, z2)
            from_bf16 = loss(z1.bfloat16(), z2.bfloat16())
        assert under_autocast.dtype == torch.float32, name
        assert torch.equal(under_autocast, reference), name
        assert from_bf16.dtype == torch.float32, name


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: L.nt_xent_loss(torch.zeros(4, 3), torch.zeros(5, 3)), "nt_xent_loss"),
        (lambda: L.moco_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(6, 2)), "queue"),
        (lambda: L.swav_loss([torch.zeros(2, 3)], [torch.zeros(2, 3)]), "at least 2"),
        (lambda: L.dino_loss([torch.zeros(2, 3)] * 2, [torch.zeros(2, 3)], torch.zeros(3)), "dino"),
        (lambda: L.deepclusterv2_loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 4)), "(H, N)"),
        (lambda: L.sinkhorn(torch.zeros(3)), "sinkhorn"),
        (lambda: L.vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2)), "vicreg_loss(z1, z2)"),
        (lambda: L.vibcreg_loss(torch.zeros(4, 3), torch.zeros(4, 2)), "vibcreg_loss(z1, z2)"),
    ],
)
def test_bad_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
