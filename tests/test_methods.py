"""Every registered SSL method on a tiny backbone; method-specific state; presets."""

from __future__ import annotations

import copy
import functools
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phenossl.ssl.base import MomentumMethod
from phenossl.ssl.methods import METHODS, build_method, method_hparams
from phenossl.ssl.presets import PRESETS, MethodPreset, get_preset

DATASET_SIZE = 24
BATCH = 6

TINY: dict[str, dict] = {
    "barlow_twins": {},
    "byol": {"pred_hidden_dim": 16},
    "deepclusterv2": {"num_prototypes": 7, "num_heads": 2, "dataset_size": DATASET_SIZE},
    "dino": {"num_prototypes": 7, "freeze_last_layer": 0, "warmup_teacher_temperature_epochs": 3},
    "mocov2plus": {"queue_size": 10},
    "nnbyol": {"pred_hidden_dim": 16, "queue_size": 10},
    "nnclr": {"pred_hidden_dim": 16, "queue_size": 10},
    "ressl": {"queue_size": 10},
    "simclr": {},
    "simsiam": {"pred_hidden_dim": 16},
    "swav": {
        "num_prototypes": 7,
        "queue_size": 10,
        "epoch_queue_starts": 0,
        "freeze_prototypes_epochs": 0,
    },
    "vibcreg": {},
    "vicreg": {},
}


class TinyBackbone(nn.Module):
    """Stand-in for ``phenossl.models.backbones.build_backbone``: (N, 3, H, W) -> (N, 32)."""

    feature_dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, self.feature_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    hparams = {"proj_hidden_dim": 16, "proj_output_dim": 16, **TINY[name], **overrides}
    return build_method(name, TinyBackbone(), **hparams)


def _batch(step: int, batch: int = BATCH) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    views = [torch.rand(batch, 3, 8, 8, generator=generator) for _ in range(2)]
    indices = (torch.arange(batch) + step * batch) % DATASET_SIZE
    return views, indices


def _train(method, steps: range, optimizer, epoch: int = 0) -> dict:
    method.on_epoch_start(epoch)
    out = {}
    for step in steps:
        views, indices = _batch(step)
        out = method.training_step(views, indices)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(step)
    return out


@functools.cache
def _trained(name: str, seed: int):
    method = _build(name, seed)
    method.on_train_start(total_steps=20)
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=0.05, momentum=0.9)
    _train(method, range(DATASET_SIZE // BATCH), optimizer, epoch=0)
    method.on_epoch_start(1)
    return method, optimizer


def _ready(name: str, seed: int = 0):
    """A method (and its optimiser) after a first epoch over the tiny dataset, so that
    DeepClusterV2 has clusters and the queues hold keys. A fresh copy on every call."""
    return copy.deepcopy(_trained(name, seed))


ALL = sorted(METHODS)


def test_registry_holds_the_thirteen_methods():
    assert sorted(TINY) == ALL
    assert len(ALL) == 13
    for name, cls in METHODS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", ALL)
def test_training_step_backward_and_optimizer_step(name):
    method, optimizer = _ready(name)
    views, indices = _batch(50)
    out = method.training_step(views, indices)
    loss = out["loss"]
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    assert all(not v.requires_grad for k, v in out.items() if k != "loss")
    optimizer.zero_grad()
    loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    before = [p.detach().clone() for p in method.backbone.parameters()]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, method.backbone.parameters()))


@pytest.mark.parametrize("name", ALL)
def test_training_step_under_bfloat16_autocast(name):
    method, _ = _ready(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.training_step(*_batch(60))
    assert out["loss"].dtype == torch.float32
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in method.backbone.parameters())


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_reproduces_the_next_loss(name):
    trained, _ = _ready(name, seed=0)
    resumed = _build(name, seed=1)  # different initial weights and queues
    resumed.load_state_dict(trained.state_dict())
    views, indices = _batch(77)
    first = trained.training_step(views, indices)["loss"]
    second = resumed.training_step(views, indices)["loss"]
    assert torch.equal(first, second)
    # and the state after that step (queues, memory, centre...) still agrees
    for (key, a), (_, b) in zip(trained.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("name", ALL)
def test_parameter_groups_cover_exactly_the_trainable_parameters(name):
    method = _build(name)
    groups = method.parameter_groups()
    assert groups[0]["name"] == "backbone"
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in method.parameters() if p.requires_grad]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(trainable)
    if isinstance(method, MomentumMethod):
        momentum = {id(p) for p in method.momentum_backbone.parameters()}
        assert not momentum & set(listed)


@pytest.mark.parametrize("name", [n for n in ALL if issubclass(METHODS[n], MomentumMethod)])
def test_momentum_networks_move_towards_the_online_ones(name):
    method, optimizer = _ready(name)
    pairs = method.momentum_pairs()
    assert len(pairs) == 2  # backbone + a head
    before = [[p.clone() for p in target.parameters()] for _, target in pairs]
    _train(method, range(50, 51), optimizer, epoch=1)
    tau = float(method.tau)
    for (online, target), old in zip(pairs, before):
        for new, o, on in zip(target.parameters(), old, online.parameters()):
            torch.testing.assert_close(new, tau * o + (1 - tau) * on, atol=1e-6, rtol=0)
            assert not new.requires_grad


_LBR = ["Linear", "BatchNorm1d", "ReLU"]
PROJECTORS = {  # solo-learn's CIFAR heads
    "barlow_twins": [*_LBR, *_LBR, "Linear"],
    "byol": [*_LBR, "Linear"],
    "deepclusterv2": [*_LBR, "Linear"],
    "mocov2plus": ["Linear", "ReLU", "Linear"],
    "nnbyol": [*_LBR, "Linear"],
    "nnclr": [*_LBR, *_LBR, "Linear", "BatchNorm1d"],
    "ressl": ["Linear", "ReLU", "Linear"],
    "simclr": ["Linear", "ReLU", "Linear"],
    "simsiam": [*_LBR, *_LBR, "Linear", "BatchNorm1d"],
    "swav": [*_LBR, "Linear"],
    "vibcreg": ["Linear", "BatchNorm1d", "GELU"] * 2 + ["Linear", "IterNorm"],
    "vicreg": [*_LBR, *_LBR, "Linear"],
}


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_projector_layouts_follow_solo_learn(name):
    projector = _build(name).projector
    assert [type(layer).__name__ for layer in projector] == PROJECTORS[name]


def test_simsiam_predictor_has_a_static_learning_rate():
    groups = {g["name"]: g for g in _build("simsiam").parameter_groups()}
    assert groups["predictor"].get("static_lr") is True
    assert "static_lr" not in groups["projector"]


# ------------------------------------------------------------------------------------------------
# method-specific behaviour


def test_mocov2plus_is_symmetric_in_its_views():
    method = _build("mocov2plus")
    with torch.no_grad():
        method.queues[1].queue.copy_(method.queues[0].queue)
    twin = copy.deepcopy(method)
    views, indices = _batch(3)
    forward = method.training_step(views, indices)["loss"]
    backward = twin.training_step(views[::-1], indices)["loss"]
    assert forward.item() == pytest.approx(backward.item(), abs=1e-6)


class _Flat(nn.Flatten):
    """A backbone without weights, so that queries of different inputs point apart."""

    feature_dim = 12


def test_mocov2plus_contrasts_each_query_with_the_other_views_key_and_queue():
    from phenossl.ssl.losses import moco_loss

    torch.manual_seed(0)
    method = build_method(
        "mocov2plus", _Flat(), proj_hidden_dim=16, proj_output_dim=16, queue_size=10
    )
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(6, 3, 2, 2, generator=generator) for _ in range(2)]
    reference = copy.deepcopy(method)
    loss = method.training_step(views, torch.arange(6))["loss"]
    with torch.no_grad():
        q1, q2 = (reference.projector(x.flatten(1)) for x in views)
        k1, k2 = (reference.momentum_projector(x.flatten(1)) for x in views)
        queue1, queue2 = (q.queue for q in reference.queues)
        expected = (moco_loss(q1, k2, queue2, 0.2) + moco_loss(q2, k1, queue1, 0.2)) / 2
        swapped = (moco_loss(q1, k2, queue1, 0.2) + moco_loss(q2, k1, queue2, 0.2)) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert abs(loss.item() - swapped.item()) > 1e-3  # the pairing matters
    torch.testing.assert_close(method.queues[0].ordered(), F.normalize(k1, dim=1))
    torch.testing.assert_close(method.queues[1].ordered(), F.normalize(k2, dim=1))


def test_nearest_neighbour_methods_take_targets_from_their_support_set():
    from phenossl.ssl.losses import byol_loss, nnclr_loss

    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(6, 3, 2, 2, generator=generator) for _ in range(2)]
    for name in ("nnbyol", "nnclr"):
        torch.manual_seed(0)
        method = build_method(
            name,
            _Flat(),
            proj_hidden_dim=16,
            proj_output_dim=16,
            pred_hidden_dim=16,
            queue_size=10,
        )
        reference = copy.deepcopy(method)
        loss = method.training_step(views, torch.arange(6))["loss"]
        with torch.no_grad():
            z1, z2 = (reference.projector(x.flatten(1)) for x in views)
            p1, p2 = reference.predictor(z1), reference.predictor(z2)
            if name == "nnbyol":
                t1, t2 = (reference.momentum_projector(x.flatten(1)) for x in views)
                _, nn1 = reference.support.nearest(t1)
                _, nn2 = reference.support.nearest(t2)
                expected = byol_loss(p1, nn2) + byol_loss(p2, nn1)
                without_support = byol_loss(p1, t2) + byol_loss(p2, t1)
                stored = F.normalize(t1, dim=1)
            else:
                _, nn1 = reference.support.nearest(z1)
                _, nn2 = reference.support.nearest(z2)
                expected = (nnclr_loss(nn1, p2) + nnclr_loss(nn2, p1)) / 2
                without_support = (nnclr_loss(z1, p2) + nnclr_loss(z2, p1)) / 2
                stored = F.normalize(z1, dim=1)
        assert loss.item() == pytest.approx(expected.item(), abs=1e-6), name
        assert abs(loss.item() - without_support.item()) > 1e-3, name
        torch.testing.assert_close(method.support.ordered(), stored)


def test_mocov2plus_queues_take_batches_that_do_not_divide_them():
    method = _build("mocov2plus")  # queue 10, batches of 6 and a last batch of 4
    for step in range(3):
        views, indices = _batch(step)
        method.training_step(views, indices)
    views, indices = _batch(3, batch=4)
    method.training_step(views, indices)
    for queue in method.queues:
        assert int(queue.num_filled) == 10
        assert int(queue.ptr) == (3 * 6 + 4) % 10


def test_queue_based_methods_store_normalised_keys():
    for name, attribute in [("mocov2plus", "queues"), ("nnclr", "support"), ("ressl", "queue")]:
        method = _build(name)
        views, indices = _batch(0)
        method.training_step(views, indices)
        queues = getattr(method, attribute)
        for queue in queues if isinstance(queues, nn.ModuleList) else [queues]:
            torch.testing.assert_close(queue.queue.norm(dim=1), torch.ones(queue.size))
            assert int(queue.num_filled) == BATCH


def test_deepclusterv2_first_epoch_fills_memory_then_kmeans_assigns():
    method = _build("deepclusterv2")
    method.on_train_start(10)
    method.on_epoch_start(0)
    views, indices = _batch(0)
    out = method.training_step(views, indices)
    assert out["loss"].item() == 0.0
    assert out["labelled_fraction"].item() == 0.0
    for step in range(1, DATASET_SIZE // BATCH):
        method.training_step(*_batch(step))
    assert bool(method.memory.filled.all())
    method.on_epoch_start(1)
    assert bool((method.assignments >= 0).all())
    assert bool((method.assignments < 7).all())
    for head in range(2):  # every sample sits in the cluster of its closest prototype
        embeddings = method.memory.embeddings[head % 2]
        closest = (embeddings @ method.prototypes[head].t()).argmax(dim=1)
        assert torch.equal(method.assignments[head], closest)
    torch.testing.assert_close(method.prototypes.norm(dim=-1), torch.ones(2, 7))
    out = method.training_step(*_batch(0))
    assert out["loss"].item() > 0
    assert out["labelled_fraction"].item() == 1.0
    # the clustering is reproducible from the seed and the epoch
    again = copy.deepcopy(method)
    method.recluster(1)
    again.recluster(1)
    assert torch.equal(method.assignments, again.assignments)
    again.recluster(2)
    assert not torch.equal(method.prototypes, again.prototypes)


def test_deepclusterv2_validates_indices_and_dataset_size():
    method = _build("deepclusterv2")
    views, _ = _batch(0)
    with pytest.raises(ValueError, match=r"\[0, 24\)"):
        method.training_step(views, torch.arange(BATCH) + 20)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        method.training_step(views, torch.arange(3))
    with pytest.raises(ValueError, match="dataset_size"):
        _build("deepclusterv2", dataset_size=5)


def test_dino_teacher_temperature_warmup_and_centre():
    method = _build("dino")  # warm-up 3 epochs from 0.04 to 0.07
    assert method.teacher_temperature(0) == pytest.approx(0.04)
    assert method.teacher_temperature(1) == pytest.approx(0.055)
    assert method.teacher_temperature(2) == pytest.approx(0.07)
    assert method.teacher_temperature(40) == pytest.approx(0.07)
    assert torch.equal(method.center, torch.zeros(7))
    out = method.training_step(*_batch(0))
    assert out["teacher_temperature"].item() == pytest.approx(0.04)
    assert method.center.abs().sum() > 0


def test_dino_and_swav_freeze_their_prototypes_in_the_first_epochs():
    dino = _build("dino", freeze_last_layer=1)
    dino.on_epoch_start(0)
    dino.training_step(*_batch(0))["loss"].backward()
    assert dino.head.last_layer.weight.grad is None
    swav = _build("swav", freeze_prototypes_epochs=2)
    swav.on_epoch_start(1)
    swav.training_step(*_batch(0))["loss"].backward()
    assert swav.prototypes.weight.grad is None
    swav.on_epoch_start(2)
    swav.training_step(*_batch(1))["loss"].backward()
    assert swav.prototypes.weight.grad is not None


def test_swav_uses_its_queue_only_from_the_configured_epoch():
    late = _build("swav", epoch_queue_starts=5)
    early = copy.deepcopy(late)
    early.epoch_queue_starts = 0
    for method in (late, early):
        method.training_step(*_batch(0))  # fills the queues
    views, indices = _batch(1)
    assert not torch.equal(
        late.training_step(views, indices)["loss"], early.training_step(views, indices)["loss"]
    )


def test_ressl_uses_the_first_view_as_query():
    method = _build("ressl")
    twin = copy.deepcopy(method)
    views, indices = _batch(0)
    a = method.training_step(views, indices)["loss"]
    b = twin.training_step(views[::-1], indices)["loss"]
    assert not torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# registry and inputs


def test_build_method_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown SSL method 'moco'"):
        build_method("moco", TinyBackbone())
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['temperatur'\]"):
        build_method("simclr", TinyBackbone(), temperatur=0.1)
    with pytest.raises(
        ValueError, match=r"missing required hyperparameter\(s\) \['dataset_size'\]"
    ):
        build_method("deepclusterv2", TinyBackbone())
    with pytest.raises(ValueError, match="feature_dim"):
        build_method("simclr", nn.Identity())


def test_training_step_needs_two_views():
    method = _build("simclr")
    views, indices = _batch(0)
    with pytest.raises(ValueError, match="exactly 2 views"):
        method.training_step(views[:1], indices)
    with pytest.raises(ValueError, match="batch sizes"):
        method.training_step([views[0], views[1][:3]], indices)


# ------------------------------------------------------------------------------------------------
# presets


def test_every_method_has_a_cifar_preset_matching_its_defaults():
    for name in ALL:
        preset = PRESETS[name]
        assert preset.method == name
        assert preset.epochs == 1000
        assert preset.optimizer in ("sgd", "lars")  # per method: tests/test_paper_recipes.py
        defaults = method_hparams(name)
        for key, value in preset.method_kwargs.items():
            assert key in defaults, (name, key)
            assert defaults[key] == value, (name, key)


def test_presets_are_accepted_by_their_methods():
    for name, preset in PRESETS.items():
        accepted = method_hparams(preset.method)
        assert set(preset.method_kwargs) <= set(accepted), name
        required = {k for k, v in accepted.items() if v is inspect.Parameter.empty}
        assert required <= set(preset.method_kwargs) | {"dataset_size"}, name
        assert "appendix" in preset.source, name


APPENDIX_B1 = {
    # name: (lr, weight decay, batch, projector output)
    "barlow_twins": (0.3, 1e-4, 512, 2048),
    "byol": (1.0, 1e-5, 512, 256),
    "deepclusterv2": (0.6, 1e-6, 512, 128),
    "dino": (0.3, 1e-4, 256, 256),
    "mocov2plus": (0.3, 1e-4, 512, 256),
    "nnbyol": (1.0, 1e-5, 512, 256),
    "nnclr": (0.4, 1e-5, 512, 256),
    "ressl": (0.05, 1e-4, 512, 256),
    "simclr": (0.4, 1e-5, 512, 256),
    "simsiam": (0.5, 1e-5, 512, 2048),
    "swav": (0.6, 1e-6, 512, 128),
    "vibcreg": (0.3, 1e-4, 512, 2048),
    "vicreg": (0.3, 1e-4, 256, 2048),
}


@pytest.mark.parametrize("name", sorted(APPENDIX_B1))
def test_cifar_presets_carry_the_appendix_values(name):
    lr, wd, batch, out_dim = APPENDIX_B1[name]
    preset = PRESETS[name]
    assert (preset.lr, preset.weight_decay, preset.batch_size) == (lr, wd, batch)
    assert preset.method_kwargs["proj_output_dim"] == out_dim


def test_cifar_presets_method_specific_appendix_values():
    kw = {name: PRESETS[name].method_kwargs for name in ALL}
    for name in ("byol", "mocov2plus", "nnbyol", "ressl"):
        assert kw[name]["base_tau"] == 0.99
    assert kw["dino"]["base_tau"] == 0.9995
    for name in ("mocov2plus", "nnclr", "simclr"):
        assert kw[name]["temperature"] == 0.2
    assert kw["mocov2plus"]["queue_size"] == 32768
    assert kw["nnclr"]["queue_size"] == 65536
    assert kw["swav"]["queue_size"] == 3840
    assert kw["swav"]["num_prototypes"] == kw["deepclusterv2"]["num_prototypes"] == 3000
    assert kw["dino"]["num_prototypes"] == 4096
    assert PRESETS["deepclusterv2"].warmup_epochs == 11
    for name, cov in (("vicreg", 1.0), ("vibcreg", 200.0)):
        assert (kw[name]["sim_loss_weight"], kw[name]["var_loss_weight"]) == (25.0, 25.0)
        assert kw[name]["cov_loss_weight"] == cov


def test_mnist_cells_and_imagenet_presets():
    mnist = get_preset("mocov2plus_mnist")
    assert (mnist.optimizer, mnist.lr, mnist.weight_decay, mnist.batch_size) == (
        "adam",
        1e-3,
        1e-4,
        32,
    )
    assert mnist.epochs == 250
    assert mnist.effective_lr(128) == 1e-3
    assert dict(mnist.method_kwargs) == {
        **PRESETS["mocov2plus"].method_kwargs,
        "queue_size": 1024,
        "temperature": 0.07,
        "proj_output_dim": 128,
    }
    cells = get_preset("mocov2plus_cells")
    assert (cells.batch_size, cells.epochs) == (128, 400)
    assert cells.method_kwargs == mnist.method_kwargs
    byol = get_preset("byol_mnist")
    assert (byol.lr, byol.weight_decay, byol.method_kwargs["proj_output_dim"]) == (0.01, 1e-5, 256)
    expected = {
        "mocov2plus": (0.3, 1e-4),
        "vicreg": (0.3, 1e-4),
        "simclr": (0.4, 1e-5),
        "byol": (0.45, 1e-5),
    }
    for method, (lr, wd) in expected.items():
        preset = get_preset(f"{method}_imagenet100")
        assert (preset.method, preset.lr, preset.weight_decay) == (method, lr, wd)
        assert (preset.batch_size, preset.epochs) == (128, 400)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("moco_mnist")


def test_preset_learning_rate_scaling_and_overrides():
    simclr = PRESETS["simclr"]
    assert simclr.lr_scaling == "linear"
    assert simclr.effective_lr() == pytest.approx(0.4 * 512 / 256)
    assert simclr.effective_lr(128) == pytest.approx(0.2)
    changed = simclr.with_overrides(batch_size=64, method_kwargs={"temperature": 0.5})
    assert changed.batch_size == 64
    assert changed.method_kwargs["temperature"] == 0.5
    assert changed.method_kwargs["proj_output_dim"] == 256
    assert simclr.method_kwargs["temperature"] == 0.2  # the shared preset is unchanged
    with pytest.raises(TypeError):
        simclr.method_kwargs["temperature"] = 1.0  # type: ignore[index]
    assert isinstance(changed, MethodPreset)
