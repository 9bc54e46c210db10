"""``phenossl demo``: the whole pipeline on a synthetic plate, in a few minutes on a laptop CPU.

Stages: write a synthetic BBBC021-like plate -> segment and crop the paper's nocodazole subset
(its four concentrations + as many DMSO cells) -> embed with VGG13-BN -> KMeans K=2 -> AMI
against the compound, next to the AMI against randomised labels.

To stay within minutes on two CPU cores the demo embeds crops resized to ``input_size`` (96 px by
default) instead of the full 196 px; pass ``input_size=None`` for full resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phenossl._progress import ProgressGenerator, stage

DEMO_COMPOUND = "nocodazole"


def iter_demo(
    out: str | Path,
    *,
    seed: int = 0,
    device: str = "auto",
    model: str = "vgg13_bn",
    input_size: int | None = 96,
    k: int = 2,
    overwrite: bool = False,
) -> ProgressGenerator[dict[str, Any]]:
    """Run the demo into ``out`` (``plate/``, ``crops/``, ``embeddings.npz``, ``report/``).

    Returns the content of ``report/report.json`` (AMI, control, composition, timings).
    """
    import time

    from phenossl.cluster_report import write_cluster_report
    from phenossl.data.bbbc021 import load_image_table, select_fields
    from phenossl.data.synthetic import iter_write_synthetic_plate
    from phenossl.embedding import iter_embed, save_embeddings
    from phenossl.pipeline import iter_make_cropset

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
    timings: dict[str, float] = {}
    n = 4

    t0 = time.perf_counter()
    plate = yield from stage(
        iter_write_synthetic_plate(out / "plate", seed=seed, overwrite=overwrite), 0, n, "plate"
    )
    timings["plate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = load_image_table(plate)
    fields = select_fields(table, compounds=[DEMO_COMPOUND], n_top=4, include_dmso=True)
    summary = yield from stage(
        iter_make_cropset(
            fields,
            out / "crops",
            paper_subset=DEMO_COMPOUND,
            seed=seed,
            overwrite=overwrite,
        ),
        1,
        n,
        "cells",
    )
    timings["cells_s"] = time.perf_counter() - t0

    from phenossl.cells.crops import CropSet

    crops = CropSet(out / "crops")
    t0 = time.perf_counter()
    features = yield from stage(
        iter_embed(crops, model, device=device, input_size=input_size, seed=seed), 2, n, "embed"
    )
    timings["embed_s"] = time.perf_counter() - t0
    save_embeddings(
        out / "embeddings.npz",
        features,
        crops.table["cell_id"].to_numpy(),
        {"cropset": str((out / "crops").resolve()), "model": model, "input_size": input_size},
    )

    t0 = time.perf_counter()
    report = write_cluster_report(
        out / "report",
        features,
        crops,
        label_column="compound",
        k=k,
        seed=seed,
        extra={
            "model": model,
            "weights": "random",
            "input_size": input_size,
            "subset": f"{DEMO_COMPOUND} (4 highest concentrations) vs DMSO",
            "cells_summary": summary,
        },
    )
    timings["cluster_s"] = time.perf_counter() - t0
    yield from stage(iter(()), 3, n, "report")
    report["timings"] = timings
    return report
