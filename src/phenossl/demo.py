"""``phenossl demo``: the whole pipeline on a synthetic plate, in a few minutes on a laptop CPU.

Stages: write a synthetic BBBC021-like plate -> segment and crop the paper's nocodazole subset
(its four concentrations + as many DMSO cells, split 70/10/20) -> embed with a randomly
initialised VGG13-BN -> train MoCoV2+/VGG13-BN on the training split's crops (the paper's cell
setting, shortened) -> embed with the trained backbone -> KMeans K=2 on the held-out test cells
-> AMI against the compound for both models, each next to its randomised-label control.

To stay within minutes on two CPU cores the demo works on crops resized to ``input_size``
(48 px by default, for training views and embeddings alike) instead of the full 196 px, and
trains for ``train_epochs`` epochs instead of the paper's 400. ``train_epochs=0`` skips training
(the random-init report only).

What to expect: a randomly initialised VGG13-BN already separates rounded nocodazole cells from
spread DMSO cells by their size and intensity (AMI about 0.3 on the test cells, control about 0),
and a few CPU epochs of MoCoV2+, whose colour jitter teaches invariance to exactly those
intensities, do not beat it (measured: 0.14-0.30 for 3-5 epochs at 32-64 px). The trained model
needs the paper's scale (400 epochs at 196 px, ``training/bbbc021_mocov2plus_vgg13.yaml``, a GPU)
to learn more than the random features give; the demo shows the workflow and reports both
numbers as they come out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phenossl._progress import Progress, ProgressGenerator, stage

DEMO_COMPOUND = "nocodazole"
#: the paper's cell setting (preset ``mocov2plus_cells``: Adam 1e-3, wd 1e-4, queue 1024, T 0.07,
#: projector 128) at demo scale. The preset's constant rate collapses the features in the first
#: steps of such a short run (tests/test_trainer.py, real MNIST); a one-epoch warm-up then cosine
#: decay avoids that.
DEMO_TRAINING: dict[str, Any] = {
    "method": {"name": "mocov2plus", "preset": "mocov2plus_cells"},
    "optim": {"scheduler": "warmup_cosine", "warmup_epochs": 1},
}


def demo_train_config(
    crops: str | Path,
    *,
    model: str = "vgg13_bn",
    input_size: int = 48,
    epochs: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
):
    """The demo's MoCoV2+ config: the paper's cell setting on ``crops``' training split."""
    from phenossl.training.config import TrainConfig

    return TrainConfig.from_dict(
        {
            "data": {"dataset": "cropset", "root": str(crops), "split": "train"},
            "model": {"backbone": model},
            "method": dict(DEMO_TRAINING["method"]),
            "augmentation": [{"name": "cell_affine_crop", "size": input_size}],
            "optim": {**DEMO_TRAINING["optim"], "batch_size": batch_size, "epochs": epochs},
            "run": {"seed": seed, "device": device, "log_every": 5},
        }
    )


def iter_demo(
    out: str | Path,
    *,
    seed: int = 0,
    device: str = "auto",
    model: str = "vgg13_bn",
    input_size: int = 48,
    k: int = 2,
    sites: int = 1,
    train_epochs: int = 3,
    train_batch_size: int = 64,
    overwrite: bool = False,
) -> ProgressGenerator[dict[str, Any]]:
    """Run the demo into ``out``; returns the content of ``report/report.json``.

    ``out`` receives ``plate/``, ``crops/``, ``embeddings_random.npz`` and
    ``report_random/`` (random-init model), and with training ``run/`` (the MoCoV2+ run folder
    and its ``final.pt``), ``embeddings.npz`` and ``report/`` (trained model). Without training
    ``report/`` holds the random-init report. ``report.json`` has ``ami``, its control, the
    composition, timings and, after training, ``random_init`` (the random-init AMI and control).
    """
    import time

    from phenossl.cells.crops import CropSet
    from phenossl.data.bbbc021 import load_image_table, select_fields
    from phenossl.data.synthetic import iter_write_synthetic_plate
    from phenossl.pipeline import iter_make_cropset

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    if train_epochs < 0:
        raise ValueError(f"train_epochs={train_epochs}: expected >= 0")
    timings: dict[str, float] = {}
    n = 5 if train_epochs else 3

    t0 = time.perf_counter()
    plate = yield from stage(
        iter_write_synthetic_plate(
            out / "plate",
            seed=seed,
            sites=sites,
            n_control_wells=8,  # twice a compound's wells: enough DMSO cells to balance
            overwrite=overwrite,
        ),
        0,
        n,
        "plate",
    )
    timings["plate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = load_image_table(plate)
    fields = select_fields(table, compounds=[DEMO_COMPOUND], n_top=4, include_dmso=True)
    summary = yield from stage(
        iter_make_cropset(
            fields, out / "crops", paper_subset=DEMO_COMPOUND, seed=seed, overwrite=overwrite
        ),
        1,
        n,
        "cells",
    )
    timings["cells_s"] = time.perf_counter() - t0
    crops = CropSet(out / "crops")
    common = {
        "subset": f"{DEMO_COMPOUND} (4 highest concentrations) vs DMSO",
        "input_size": input_size,
        "cells_summary": summary,
        "timings": timings,
    }

    random_dir = out / ("report_random" if train_epochs else "report")
    random_report = yield from stage(
        _embed_and_report(
            crops,
            model,
            out / ("embeddings_random.npz" if train_epochs else "embeddings.npz"),
            random_dir,
            "random",
            timings,
            device=device,
            input_size=input_size,
            k=k,
            seed=seed,
            extra={**common, "model": model, "weights": "random"},
        ),
        2,
        n,
        "random-init model",
    )
    if not train_epochs:
        yield Progress(n * 1000, n * 1000, "done")
        return random_report

    from phenossl.training.trainer import iter_train

    config = demo_train_config(
        out / "crops",
        model=model,
        input_size=input_size,
        epochs=train_epochs,
        batch_size=min(train_batch_size, int((crops.table["split"] == "train").sum())),
        seed=seed,
        device=device,
    )
    t0 = time.perf_counter()
    checkpoint = yield from stage(iter_train(config, out / "run", resume=False), 3, n, "train")
    timings["train_s"] = time.perf_counter() - t0

    control = {
        key: random_report[key] for key in ("ami", "ami_control_mean", "ami_control_std", "report")
    }
    report = yield from stage(
        _embed_and_report(
            crops,
            checkpoint,
            out / "embeddings.npz",
            out / "report",
            "trained",
            timings,
            device=device,
            input_size=input_size,
            k=k,
            seed=seed,
            extra={
                **common,
                "model": str(checkpoint),
                "weights": f"MoCoV2+ ({model}, {train_epochs} epochs on the training split)",
                "random_init": control,
            },
        ),
        4,
        n,
        "trained model",
    )
    yield Progress(n * 1000, n * 1000, "done")
    return report


def _embed_and_report(
    crops: Any,
    model: Any,
    embeddings_path: Path,
    report_dir: Path,
    name: str,
    timings: dict[str, float],
    *,
    device: str,
    input_size: int,
    k: int,
    seed: int,
    extra: dict[str, Any],
) -> ProgressGenerator[dict[str, Any]]:
    """Embed every crop, save the embeddings, cluster the test split and write its report."""
    import time

    from phenossl.cluster_report import write_cluster_report, write_report_json
    from phenossl.embedding import iter_embed, save_embeddings

    t0 = time.perf_counter()
    features = yield from iter_embed(crops, model, device=device, input_size=input_size, seed=seed)
    timings[f"embed_{name}_s"] = time.perf_counter() - t0
    cell_ids = crops.table["cell_id"].to_numpy()
    save_embeddings(
        embeddings_path,
        features,
        cell_ids,
        {"cropset": str(Path(crops.path).resolve()), "model": str(model), "input_size": input_size},
    )
    yield Progress(1, 1, "clustering")
    t0 = time.perf_counter()
    # the held-out cells: the trained model never saw them, and both models are scored alike
    report = write_cluster_report(
        report_dir,
        features,
        crops,
        cell_ids=cell_ids,
        label_column="compound",
        split="test",
        k=k,
        seed=seed,
        extra=extra,
    )
    timings[f"cluster_{name}_s"] = time.perf_counter() - t0
    report["report"] = str(report_dir / "report.json")
    write_report_json(report_dir / "report.json", report)  # timings were filled in since
    return report
