"""The SSL trainer: exact resume, loss mix, every method from its preset, checkpoints, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import phenossl
from phenossl.augment import build_augmentation
from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.models.checkpoint import METADATA_KEYS, load_backbone, load_checkpoint
from phenossl.ssl.methods import METHODS
from phenossl.training.train.config import TrainConfig, parse_overrides
from phenossl.training.train.optim import build_optimizer, scheduled_lr
from phenossl.training.train.trainer import TrainStep, build_method_for, iter_train, train

CPU = torch.device("cpu")
TIME_KEYS = ("time_s", "images_per_s", "views_per_s", "knn_time_s")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """Small CIFAR-10-like data in the official layout (48 training, 24 test images)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=48, n_test=24, seed=0)
    return root


def _config(root: Path, *overrides: str, smoke: bool = False) -> TrainConfig:
    """A tiny run: VGG11-BN on 16 px views of 24 images, batches of 8, on the CPU."""
    base = {
        "data": {"dataset": "cifar10", "root": str(root), "limit": 24},
        "model": {"backbone": "vgg11_bn"},
        "method": {"name": "simclr", "proj_hidden_dim": 32, "proj_output_dim": 16},
        "augmentation": [{"name": "cifar", "size": 16}],
        "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
        "run": {"device": "cpu", "log_every": 1},
    }
    return TrainConfig.from_dict(base, overrides=parse_overrides(overrides), smoke=smoke)


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _untimed(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS} for line in lines]


def _assert_same_state(a: Path, b: Path) -> None:
    """Two runs' final backbones and last.pt's whole state (heads, optimiser) are identical."""
    first, second = load_checkpoint(a), load_checkpoint(b)
    last = [load_checkpoint(p.parent / "checkpoints" / "last.pt") for p in (a, b)]
    parts = {
        "backbone": (first["backbone"], second["backbone"]),
        "last.backbone": (last[0]["backbone"], last[1]["backbone"]),
        "method": (last[0]["state"]["method"], last[1]["state"]["method"]),
    }
    for part, (x, y) in parts.items():
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), f"{part}.{key} differs"
    x, y = (c["state"]["optimizer"]["state"] for c in last)
    assert x.keys() == y.keys()
    for key in x:
        for name, value in x[key].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, y[key][name]), f"optimizer.{key}.{name} differs"


# --- exact resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu_amp", [False, True])
def test_resume_after_an_interruption_ends_bit_identical(
    tmp_path, cifar_root, monkeypatch, cpu_amp
):
    # MoCoV2+: momentum encoder, queue, SGD momentum, warm-up + cosine schedule, tau schedule;
    # also in bf16 on the CPU (run.cpu_amp; forced on here: emulated bf16 is deterministic too)
    import phenossl._device

    monkeypatch.setattr(phenossl._device, "cpu_has_native_bf16", lambda: True)
    config = _config(
        cifar_root,
        "method={name: mocov2plus, proj_hidden_dim: 32, proj_output_dim: 16, queue_size: 16}",
        "optim.epochs=3",
        "optim.warmup_epochs=1",
        f"run.cpu_amp={str(cpu_amp).lower()}",
    )
    full = train(config, tmp_path / "full")

    gen = iter_train(config, tmp_path / "part")
    for event in gen:  # 3 steps per epoch: stop in the middle of the second epoch
        torch.rand(7)  # the caller's use of the global RNG must not change the run
        if event.done == 5:
            gen.close()
            break
    last = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    assert last["metadata"]["epoch"] == 1
    assert not (tmp_path / "part" / "final.pt").exists()
    resumed = train(config, tmp_path / "part")

    _assert_same_state(full, resumed)
    assert _untimed(tmp_path / "part") == _untimed(tmp_path / "full")  # no duplicated lines
    assert len(_records(tmp_path / "full", "step")) == 9


def test_training_leaves_the_global_rng_alone_and_is_seeded(tmp_path, cifar_root):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = train(_config(cifar_root, "run.seed=3"), tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    second = train(_config(cifar_root, "run.seed=3"), tmp_path / "b")
    _assert_same_state(first, second)
    other = load_checkpoint(train(_config(cifar_root, "run.seed=4"), tmp_path / "c"))
    same = load_checkpoint(first)
    key = next(iter(same["backbone"]))
    assert not torch.equal(same["backbone"][key], other["backbone"][key])


def test_finished_runs_return_at_once_changed_configs_are_refused(tmp_path, cifar_root):
    config = _config(cifar_root)
    final = train(config, tmp_path / "run")
    stamp = final.stat().st_mtime_ns
    events = list(iter_train(config, tmp_path / "run"))
    assert len(events) == 1
    assert "already trained" in events[0].message
    assert final.stat().st_mtime_ns == stamp

    with pytest.raises(ValueError, match=r"different config \(optim\.lr differ"):
        train(_config(cifar_root, "optim.lr=0.1"), tmp_path / "run")
    # run settings may change between an interruption and its resumption
    assert train(_config(cifar_root, "run.log_every=2"), tmp_path / "run") == final

    again = train(_config(cifar_root, "optim.lr=0.1"), tmp_path / "run", resume=False)
    assert again.stat().st_mtime_ns != stamp
    assert load_checkpoint(again)["metadata"]["config"]["optim"]["lr"] == 0.1
    assert len(_records(tmp_path / "run", "epoch")) == 1


def _interrupted(config: TrainConfig, out: Path) -> None:
    """Train into ``out`` until just after the first epoch's checkpoint (3 steps per epoch)."""
    events = iter_train(config, out)
    for event in events:
        if event.done == 4:
            break
    events.close()
    assert (out / "checkpoints" / "last.pt").is_file()


def test_runs_resume_on_the_same_data_anywhere_and_refuse_other_data(tmp_path, cifar_root):
    import shutil

    settings = ("optim.epochs=2", "run.checkpoint_every=1")
    run = tmp_path / "run"
    _interrupted(_config(cifar_root, *settings), run)
    # the same data, moved: resumes (the data's location is not the run)
    moved = shutil.copytree(cifar_root, tmp_path / "moved")
    final = train(_config(moved, *settings), run)
    assert load_checkpoint(final)["metadata"]["data_fingerprint"]
    assert train(_config(moved, *settings), run) == final
    # other data under the same name and settings: refused, by content, resumed or finished
    other = tmp_path / "other"
    write_cifar_like(other, n_train=48, n_test=24, seed=1)
    with pytest.raises(ValueError, match="trained on other data"):
        train(_config(other, *settings), run)
    _interrupted(_config(cifar_root, *settings), tmp_path / "part")
    with pytest.raises(ValueError, match="trained on other data"):
        train(_config(other, *settings), tmp_path / "part")


def test_keep_epochs_leaves_a_small_snapshot_of_every_saved_epoch(tmp_path, cifar_root):
    final = train(_config(cifar_root, "optim.epochs=2", "run.keep_epochs=true"), tmp_path / "run")
    snapshots = sorted((tmp_path / "run" / "checkpoints").glob("epoch*.pt"))
    assert [p.name for p in snapshots] == ["epoch1.pt", "epoch2.pt"]
    for epoch, path in enumerate(snapshots, start=1):
        data = load_checkpoint(path)
        assert data["metadata"]["epoch"] == epoch and set(data["state"]) == {"epoch", "step"}
    last, done = load_checkpoint(snapshots[-1]), load_checkpoint(final)
    for key, value in done["backbone"].items():
        assert torch.equal(value, last["backbone"][key]), key


# --- the step -------------------------------------------------------------------------------------


def _step(config: TrainConfig, augmentations, dataset, *, total_steps: int = 4) -> TrainStep:
    method = build_method_for(config, dataset)
    optimizer = build_optimizer(method.parameter_groups(), config.optim)
    return TrainStep(
        method,
        optimizer,
        augmentations,
        dataset.mean,
        dataset.std,
        config,
        device=CPU,
        total_steps=total_steps,
        warmup_steps=config.optim.warmup_epochs,
    )


@pytest.mark.parametrize(("cpu_amp", "native", "bf16"), [
    (True, True, True), (False, True, False), (True, False, False),
])  # fmt: skip
def test_cpu_amp_runs_the_forward_in_bf16_on_cpus_that_have_it(
    cifar_root, monkeypatch, cpu_amp, native, bf16
):
    import phenossl._device

    monkeypatch.setattr(phenossl._device, "cpu_has_native_bf16", lambda: native)
    config = _config(cifar_root, f"run.cpu_amp={str(cpu_amp).lower()}")
    dataset = build_dataset("cifar10", cifar_root, limit=8)
    step = _step(config, [(build_augmentation("identity", size=16), 1.0)], dataset)
    seen = []
    step.method.backbone.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    images, _ = dataset.get_batch(torch.arange(8))
    logs = step(images, torch.arange(8), 0)
    assert step.amp is bf16
    assert set(seen) == {torch.bfloat16 if bf16 else torch.float32}
    assert torch.isfinite(logs["loss"]) and logs["loss"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in step.method.parameters())


@pytest.mark.parametrize(("native", "cpu_amp", "said"), [
    (True, True, "precision: bfloat16 autocast on cpu"),
    (True, False, "precision: float32 on cpu (this CPU has bf16 instructions: run.cpu_amp=true"),
    (False, True, "precision: float32 on cpu"),
])  # fmt: skip
def test_the_precision_is_described_with_the_faster_option(
    cifar_root, monkeypatch, native, cpu_amp, said
):
    import phenossl._device
    from phenossl.training.train.trainer import describe_precision

    monkeypatch.setattr(phenossl._device, "cpu_has_native_bf16", lambda: native)
    text = describe_precision(_config(cifar_root, f"run.cpu_amp={str(cpu_amp).lower()}"))
    assert text.startswith(said)
    assert ("trains about 1.8x faster" in text) is (native and not cpu_amp)


def test_loss_mix_weights_the_losses_and_their_gradients(cifar_root):
    config = _config(
        cifar_root, "optim={optimizer: sgd, weight_decay: 0, scheduler: constant, lr: 0.1}"
    )
    dataset = build_dataset("cifar10", cifar_root, limit=8)
    identity = build_augmentation("identity", size=16)
    images, _ = dataset.get_batch(torch.arange(8))
    indices = torch.arange(8)
    single = _step(config, [(identity, 1.0)], dataset)
    mix = _step(config, [(identity, 0.4), (identity, 1.0)], dataset)
    before = [p.detach().clone() for p in single.method.backbone.parameters()]
    logs_single = single(images, indices, 0)
    logs_mix = mix(images, indices, 0)

    # SimCLR is stateless and identity views repeat, so each composition's loss is the same
    assert logs_mix["identity0/loss"] == pytest.approx(float(logs_single["loss"]), rel=1e-5)
    assert logs_mix["identity1/loss"] == pytest.approx(float(logs_single["loss"]), rel=1e-5)
    assert float(logs_mix["loss"]) == pytest.approx(1.4 * float(logs_single["loss"]), rel=1e-5)
    # first SGD step: update = lr * gradient, and the mix's gradient is 1.4 times as large
    # (compared as one vector: conv biases before BatchNorm get gradients of rounding size)
    with torch.no_grad():
        d_single = torch.cat(
            [(p - p0).flatten() for p0, p in zip(before, single.method.backbone.parameters())]
        )
        d_mix = torch.cat(
            [(p - p0).flatten() for p0, p in zip(before, mix.method.backbone.parameters())]
        )
    assert float(d_single.norm()) > 0
    assert float((d_mix - 1.4 * d_single).norm() / (1.4 * d_single).norm()) < 1e-4


def test_loss_mix_contrasts_every_composition_with_the_queue_of_earlier_batches(cifar_root):
    """Review finding: enqueueing after each composition put the batch's own keys (false
    negatives) into the queue the next composition contrasts against."""
    config = _config(
        cifar_root,
        "method={name: mocov2plus, proj_hidden_dim: 32, proj_output_dim: 16, queue_size: 64}",
    )
    dataset = build_dataset("cifar10", cifar_root, limit=8)
    identity = build_augmentation("identity", size=16)
    images, _ = dataset.get_batch(torch.arange(8))
    step = _step(config, [(identity, 0.4), (identity, 1.0)], dataset)
    method = step.method
    method.on_train_start(4)
    seen = []
    original = method.training_step

    def spy(views, indices):
        seen.append([q.values() for q in method.queues])
        return original(views, indices)

    method.training_step = spy
    before = [q.values() for q in method.queues]
    step(images, torch.arange(8), 0)

    assert len(seen) == 2
    for first, second, old in zip(*seen, before):
        assert torch.equal(first, old) and torch.equal(second, old)
    # after the step both compositions' keys are in, each exactly once
    assert [int(q.num_filled) for q in method.queues] == [16, 16]

    def failing_step() -> None:
        with method.deferred_enqueues():
            method.enqueue(method.queues[0], torch.ones(8, 16))
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_step()
    assert int(method.queues[0].num_filled) == 16  # a failed step enqueues nothing


def test_views_are_normalised_with_the_dataset_statistics(cifar_root):
    config = _config(cifar_root)
    dataset = build_dataset("cifar10", cifar_root, limit=8)
    identity = build_augmentation("identity")
    step = _step(config, [(identity, 1.0)], dataset)
    images, _ = dataset.get_batch(torch.arange(8))
    (pair,) = step.views(images)
    mean = torch.tensor(dataset.mean).view(1, 3, 1, 1)
    std = torch.tensor(dataset.std).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean) / std
    for view in pair:
        torch.testing.assert_close(view, expected)
    assert abs(float(pair[0].mean())) < 0.3  # whole-dataset stats on a subset: roughly centred


def test_schedule_warms_up_then_decays_and_static_groups_keep_their_rate(cifar_root):
    config = _config(cifar_root, "method={name: simsiam, proj_hidden_dim: 32, pred_hidden_dim: 8}")
    optim = config.optim
    base = optim.effective_lr()
    assert optim.scheduler == "warmup_cosine"
    optim.warmup_epochs, optim.warmup_start_lr, optim.min_lr = 1, 0.0, 0.0
    assert scheduled_lr(0, 10, 4, optim) == 0.0
    assert scheduled_lr(2, 10, 4, optim) == pytest.approx(base / 2)
    assert scheduled_lr(4, 10, 4, optim) == pytest.approx(base)
    assert scheduled_lr(7, 10, 4, optim) == pytest.approx(base / 2)
    assert scheduled_lr(10, 10, 4, optim) == pytest.approx(0.0, abs=1e-12)

    dataset = build_dataset("cifar10", cifar_root, limit=8)
    step = _step(config, [(build_augmentation("cifar", size=16), 1.0)], dataset, total_steps=10)
    step.warmup_steps = 4
    images, _ = dataset.get_batch(torch.arange(8))
    step(images, torch.arange(8), 2)
    rates = {g["name"]: g["lr"] for g in step.optimizer.param_groups}
    assert rates["predictor"] == pytest.approx(base)  # SimSiam's static_lr group
    assert rates["backbone"] == rates["projector"] == pytest.approx(base / 2)
    constant = _config(cifar_root, "optim.scheduler=constant").optim
    rate = constant.effective_lr()
    assert scheduled_lr(0, 10, 4, constant) == scheduled_lr(9, 10, 4, constant) == rate


def test_lars_trains_through_the_trainer(tmp_path, cifar_root):
    final = train(_config(cifar_root, "optim.optimizer=lars"), tmp_path / "run")
    losses = [r["loss"] for r in _records(tmp_path / "run", "step")]
    assert len(losses) == 3
    assert all(math.isfinite(v) for v in losses)
    assert load_checkpoint(final)["metadata"]["config"]["optim"]["optimizer"] == "lars"


# --- every method ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_from_its_preset(tmp_path, cifar_root, name):
    overrides = [f"method.name={name}", "data.limit=16", "run.log_every=1"]
    if name == "deepclusterv2":  # k-means needs one image per prototype; epoch 0 only fills
        overrides += ["method.num_prototypes=4", "optim.epochs=2"]
    config = TrainConfig.from_dict(
        {
            "data": {"dataset": "cifar10", "root": str(cifar_root)},
            "model": {"backbone": "vgg11_bn"},
            "augmentation": [{"name": "cifar", "size": 16}],
            "optim": {"batch_size": 8, "epochs": 1},
            "run": {"device": "cpu"},
        },
        overrides=parse_overrides(overrides),
    )
    assert config.method.hparams["proj_output_dim"] > 16  # the preset's heads, not tiny ones
    initial = build_method_for(config, build_dataset("cifar10", cifar_root, limit=16))
    final = train(config, tmp_path / name)

    losses = [r["loss"] for r in _records(tmp_path / name, "step")]
    assert len(losses) == 2 * config.optim.epochs
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] != 0.0
    trained = load_checkpoint(final)["backbone"]
    changed = [
        k for k, v in initial.backbone.state_dict().items() if not torch.equal(v, trained[k])
    ]
    assert any(k.endswith("weight") for k in changed)


# --- checkpoints, metrics, data -------------------------------------------------------------------


def test_final_checkpoint_follows_the_contract_and_embeds(tmp_path, cifar_root):
    config = _config(cifar_root, "run.seed=11", "run.eval={knn: true, k: 5}")
    final = train(config, tmp_path / "run")
    assert final == tmp_path / "run" / "final.pt"
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # the one resume point
    # final.pt: the backbone and metadata only (no heads, optimiser or RNG), small
    assert set(load_checkpoint(final)["state"]) == {"epoch", "step"}
    assert (
        final.stat().st_size < 0.5 * (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_size
    )
    meta = load_checkpoint(final)["metadata"]
    assert set(METADATA_KEYS) <= set(meta)
    dataset = build_dataset("cifar10", cifar_root)
    assert meta["method"] == "simclr"
    assert (meta["backbone"], meta["in_channels"], meta["cifar_stem"]) == ("vgg11_bn", 3, False)
    assert (meta["epoch"], meta["seed"]) == (1, 11)
    np.testing.assert_allclose(meta["input_mean"], dataset.mean)
    np.testing.assert_allclose(meta["input_std"], dataset.std)
    assert TrainConfig.from_dict(meta["config"]) == config
    assert (
        TrainConfig.from_dict(
            __import__("yaml").safe_load((tmp_path / "run" / "config.yaml").read_text())
        )
        == config
    )

    images, _ = dataset.get_batch(torch.arange(10))
    features = phenossl.embed(images.numpy(), model=final, device="cpu", batch_size=4)
    backbone, _ = load_backbone(final)
    mean = torch.tensor(dataset.mean).view(1, 3, 1, 1)
    std = torch.tensor(dataset.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = backbone((images.float() / 255 - mean) / std)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)

    (epoch,) = _records(tmp_path / "run", "epoch")
    assert epoch["images_per_s"] > 0
    assert epoch["views_per_s"] == pytest.approx(2 * epoch["images_per_s"])
    assert 0.0 <= epoch["knn_top1"] <= 1.0
    steps = _records(tmp_path / "run", "step")
    assert [r["step"] for r in steps] == [1, 2, 3]
    rates = [r["lr"] for r in steps]  # no warm-up: cosine decay from the first step on
    assert rates[0] == pytest.approx(config.optim.effective_lr())
    assert rates[0] > rates[1] > rates[2] > 0


def test_bad_data_is_reported(tmp_path, cifar_root):
    with pytest.raises(ValueError, match=r"24 samples, fewer than optim\.batch_size=32"):
        train(_config(cifar_root, "optim.batch_size=32"), tmp_path / "a")
    with pytest.raises(ValueError, match=r"model\.in_channels=1 but the dataset"):
        train(_config(cifar_root, "model.in_channels=1"), tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        train(_config(tmp_path / "nowhere"), tmp_path / "c")


# --- a real short run -----------------------------------------------------------------------------


def _inverted_knn(backbone, bank, queries) -> float:
    """kNN accuracy of colour-inverted held-out digits against a bank of normal ones."""
    from phenossl.data.image_dataset import TensorImageDataset
    from phenossl.training.evaluate.protocols import extract_features, knn_accuracy

    inverted = TensorImageDataset(
        255 - queries.images,
        queries.targets,
        name="inverted",
        classes=queries.classes,
        mean=queries.mean,
        std=queries.std,
    )
    options = {"input_size": 16, "device": "cpu"}
    train = extract_features(backbone, bank, **options)
    return knn_accuracy(*train, *extract_features(backbone, inverted, **options), device="cpu")


@pytest.mark.slow
@pytest.mark.realdata
def test_mocov2plus_on_real_mnist_beats_chance_and_learns_its_invariance(tmp_path, mnist_root):
    """MoCoV2+ (appendix B.2 preset: Adam 1e-3, queue 1024, T 0.07, batch 32) on 2000 digits.

    Measured on a 2-core CPU (about 1.5 minutes): kNN accuracy of held-out digits 0.53-0.60
    (chance 0.1); random-init features already score about 0.85 and a run this short does not
    beat them, but it does learn the colour-inversion invariance of the ``mnist_digit``
    composition: inverted digits against a normal bank go from 0.08 at init to 0.30 after three
    epochs. Two epochs gave 0.27 on one machine and 0.176 on another (AVX-512 kernels), too
    close to the bound, hence the third. The one deviation from the preset is a linear warm-up
    over the first two epochs: at a constant 1e-3 the first hundred steps collapse the
    features (kNN about 0.3), from which MoCo recovers only over many epochs.
    """
    config = TrainConfig.from_dict(
        {
            "data": {"dataset": "mnist", "root": str(mnist_root), "limit": 2000},
            "model": {"backbone": "vgg11_bn"},
            "method": {"name": "mocov2plus", "preset": "mocov2plus_mnist"},
            "augmentation": [{"name": "mnist_digit", "size": 16}],
            "optim": {"epochs": 3, "scheduler": "warmup_cosine", "warmup_epochs": 2},
            "run": {"device": "cpu", "log_every": 10, "eval": {"knn": True, "limit": 1000}},
        }
    )
    bank = build_dataset("mnist", mnist_root, limit=2000)
    queries = build_dataset("mnist", mnist_root, split="test", limit=1000)
    initial = build_method_for(config, bank).backbone
    torch.set_num_threads(2)
    final = train(config, tmp_path / "mnist")

    epochs = _records(tmp_path / "mnist", "epoch")
    assert all(math.isfinite(r["loss"]) for r in epochs)
    assert epochs[-1]["knn_top1"] > 0.5  # 10 classes: chance 0.1
    before = _inverted_knn(initial, bank, queries)
    after = _inverted_knn(load_backbone(final)[0], bank, queries)
    assert before < 0.12
    assert after > max(0.18, 2 * before)


def test_model_init_starts_from_a_checkpoint_or_a_shipped_model(cifar_root, tmp_path):
    from phenossl.models.backbones import build_backbone
    from phenossl.models.checkpoint import save_checkpoint

    source = build_backbone("vgg11_bn", seed=123)
    path = save_checkpoint(tmp_path / "init.pt", backbone=source, metadata={})
    dataset = build_dataset("cifar10", cifar_root, limit=8)
    method = build_method_for(_config(cifar_root, f"model.init={path}"), dataset)
    for (name, a), b in zip(source.state_dict().items(), method.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    # the run's own normalisation, not the source's
    expected = [float(v) for v in torch.as_tensor(dataset.mean).flatten()]
    assert list(method.backbone.input_mean) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"model\.init='nope\.pt' is neither"):
        build_method_for(_config(cifar_root, "model.init=nope.pt"), dataset)
    with pytest.raises(ValueError, match=r"does not fit model\.backbone"):  # VGG13 into VGG11
        build_method_for(_config(cifar_root, "model.init=phenossl-cells"), dataset)


def test_a_fine_tune_keeps_the_embedding_norm_of_its_starting_model(cifar_root, tmp_path):
    from phenossl.models.backbones import build_backbone
    from phenossl.models.checkpoint import save_checkpoint

    source = build_backbone("vgg11_bn", seed=123)
    cosine = save_checkpoint(tmp_path / "l2.pt", backbone=source, metadata={"embedding_norm": "l2"})
    final = train(_config(cifar_root, f"model.init={cosine}"), tmp_path / "tuned")
    assert load_checkpoint(final)["metadata"]["embedding_norm"] == "l2"
    last = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")
    assert last["metadata"]["embedding_norm"] == "l2"
    scratch = train(_config(cifar_root), tmp_path / "scratch")
    assert "embedding_norm" not in load_checkpoint(scratch)["metadata"]


def test_read_ahead_keeps_order_and_raises_where_the_item_is_reached():
    from concurrent.futures import ThreadPoolExecutor

    from phenossl._prefetch import read_ahead

    def load(x):
        if x == 3:
            raise KeyError(x)
        return x * 10

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert list(read_ahead(load, [0, 1, 2], pool)) == [(0, 0), (10, 1), (20, 2)]
        got = []

        def drain():
            for value, _ in read_ahead(load, [1, 2, 3, 4], pool, depth=3):
                got.append(value)

        with pytest.raises(KeyError):
            drain()
        assert got == [10, 20]


def test_cropset_train_config_uses_the_cell_preset(tmp_path):
    from phenossl.training.train.trainer import cropset_train_config

    config = cropset_train_config(tmp_path, view_size=48, epochs=2, batch_size=16)
    assert config.method.preset == "mocov2plus_cells"
    assert config.data.dataset == "cropset" and config.data.split is None
    other = cropset_train_config(tmp_path, method="simclr", split="train", log_every=5)
    assert other.method.preset == "simclr" and other.data.split == "train"
    assert other.run.log_every == 5
