"""``phenossl demo``: the whole pipeline on a synthetic plate, in a few minutes on a laptop CPU.

Stages: write a synthetic BBBC021-like plate -> segment and crop the paper's nocodazole subset
(its four concentrations + as many DMSO cells, split 70/10/20) at the crop size the shipped cell
model was trained on (68 px single-cell crops) -> embed with a randomly initialised VGG13-BN and
with the shipped model ``phenossl-cells`` -> a short MoCoV2+ fine-tune of the shipped model on the
training split's crops -> embed with it -> KMeans K=2 on the held-out test cells -> AMI against the
compound for all three, each next to its randomised-label control.

The models see the crops resized to ``input_size`` (48 px, the shipped model's input size) and
the fine-tune runs ``train_epochs`` epochs. ``train_epochs=0`` skips the fine-tune. Without the
shipped model (a source checkout without its weights) the crops are the paper's 196 px and the
short training starts from random init, as in earlier releases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phenossl._progress import Progress, ProgressGenerator, stage

DEMO_COMPOUND = "nocodazole"
#: the paper's cell setting (MoCoV2+ with its preset ``mocov2plus_cells``: Adam 1e-3, wd 1e-4,
#: queue 1024, T 0.07, projector 128) at demo scale. The preset's constant rate collapses the
#: features in the first steps of such a short run (tests/test_trainer.py, real MNIST); a
#: one-epoch warm-up then cosine decay avoids that.
DEMO_TRAINING: dict[str, Any] = {
    "method": "mocov2plus",
    "optim": {"scheduler": "warmup_cosine", "warmup_epochs": 1},
}
#: the shipped model the demo compares with random init and fine-tunes
DEMO_PRETRAINED = "phenossl-cells"


def demo_train_config(
    crops: str | Path,
    *,
    model: str = "vgg13_bn",
    input_size: int = 48,
    epochs: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    init: str | None = None,
    augmentation: str = "cell_affine_crop",
):
    """The demo's MoCoV2+ config on ``crops``' training split (``init``: fine-tune from it)."""
    from phenossl.training.train.trainer import cropset_train_config

    return cropset_train_config(
        crops,
        method=DEMO_TRAINING["method"],
        backbone=model,
        augmentation=augmentation,
        view_size=input_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        split="train",
        init=init,
        optim=DEMO_TRAINING["optim"],
        log_every=5,
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

    from phenossl.data.bbbc021 import load_image_table, select_fields
    from phenossl.data.cropset import CropSet
    from phenossl.data.synthetic import iter_write_synthetic_plate
    from phenossl.pipeline import iter_make_cropset

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    if train_epochs < 0:
        raise ValueError(f"train_epochs={train_epochs}: expected >= 0")
    from phenossl.models.pretrained import (
        available_pretrained,
        expected_sizes,
        finetune_settings,
    )

    shipped = DEMO_PRETRAINED if DEMO_PRETRAINED in available_pretrained() else None
    crop_size, shipped_input = expected_sizes(shipped, 196) if shipped else (196, input_size)
    timings: dict[str, float] = {}
    n = 3 + (shipped is not None) + (2 if train_epochs else 0)

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
            fields,
            out / "crops",
            crop_size=crop_size,
            paper_subset=DEMO_COMPOUND,
            seed=seed,
            overwrite=overwrite,
        ),
        1,
        n,
        "cells",
    )
    timings["cells_s"] = time.perf_counter() - t0
    crops = CropSet(out / "crops")
    common = {
        "subset": f"{DEMO_COMPOUND} (4 highest concentrations) vs DMSO",
        "crop_size": crop_size,
        "input_size": input_size,
        "cells_summary": summary,
        "timings": timings,
    }

    # (name, model, label, report folder, embeddings file, input size)
    runs = [("random", model, f"random-init {model}", "report_random", input_size)]
    weights = {"random": "random", "shipped": shipped}
    if shipped:
        runs.append(("shipped", shipped, shipped, "report_shipped", shipped_input))
    results: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for index, (name, net, label, folder, size) in enumerate(runs, start=2):
        last = index == n - 1
        report = yield from stage(
            _embed_and_report(
                crops,
                net,
                out / ("embeddings.npz" if last else f"embeddings_{name}.npz"),
                out / ("report" if last else folder),
                name,
                timings,
                device=device,
                input_size=size,
                k=k,
                seed=seed,
                label=label,
                weights=weights[name],
                common=common,
            ),
            index,
            n,
            label,
        )
        results[name] = _summary(report, label)
    if train_epochs:
        from phenossl.training.train.trainer import iter_train

        tune = finetune_settings(shipped) if shipped else None
        config = demo_train_config(
            out / "crops",
            model=tune["backbone"] if tune else model,
            input_size=shipped_input,
            epochs=train_epochs,
            batch_size=min(train_batch_size, int((crops.table["split"] == "train").sum())),
            seed=seed,
            device=device,
            init=shipped,
            augmentation=tune["composition"] if tune else "cell_affine_crop",
        )
        t0 = time.perf_counter()
        checkpoint = yield from stage(
            iter_train(config, out / "run", resume=False), n - 2, n, "train"
        )
        timings["train_s"] = time.perf_counter() - t0
        what = f"{shipped} fine-tuned" if shipped else f"MoCoV2+ {model}"
        label = f"{what} ({train_epochs} epochs on the training split)"
        report = yield from stage(
            _embed_and_report(
                crops,
                checkpoint,
                out / "embeddings.npz",
                out / "report",
                "trained",
                timings,
                device=device,
                input_size=shipped_input,
                k=k,
                seed=seed,
                label=label,
                weights=label,
                common=common,
            ),
            n - 1,
            n,
            "trained model",
        )
        results["trained"] = _summary(report, label)
    report["models"] = results
    if "random" in results and len(results) > 1:
        report["random_init"] = results["random"]
    from phenossl.clustering_report import write_report_json

    write_report_json(Path(report["report"]), report)
    yield Progress(n * 1000, n * 1000, "done")
    return report


def _summary(report: dict[str, Any], label: str) -> dict[str, Any]:
    keys = ("ami", "ami_control_mean", "ami_control_std", "report")
    return {"label": label, **{key: report[key] for key in keys if key in report}}


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
    label: str,
    weights: str | None,
    common: dict[str, Any],
) -> ProgressGenerator[dict[str, Any]]:
    """Embed every crop, save the embeddings, cluster the test split and write its report.

    The report records ``common``, then the model, its ``weights``, ``label`` and input size.
    """
    import time

    from phenossl.clustering_report import write_cluster_report, write_report_json
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
        extra={
            **common,
            "model": str(model),
            "weights": weights,
            "label": label,
            "input_size": input_size,
        },
    )
    timings[f"cluster_{name}_s"] = time.perf_counter() - t0
    report["report"] = str(report_dir / "report.json")
    write_report_json(report_dir / "report.json", report)  # timings were filled in since
    return report
