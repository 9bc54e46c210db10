"""Time one field through read -> normalise -> segment -> crop on ONE CPU core.

Uses the real BBBC021 field in ../shared/data/bbbc021 when present, else a synthetic
1024 x 1280 DMSO field (``phenossl.data.synthetic``, ~180 cells) written to a temporary folder. Each stage is timed over
``--repeats`` runs (after one warm-up); the table and the JSON give the median and minimum wall
time and the median CPU time per stage, their total, and for scale a plain scikit-image
Otsu + distance-transform watershed of the same DAPI channel. Writes
benchmarks/results/segmentation.json.

    PYTHONPATH=src python benchmarks/bench_segmentation.py [--repeats 30]

Wall times on a shared machine include waiting for a core; the CPU times and the load average
recorded next to them tell how quiet the machine was.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / scipy are imported

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import skimage  # noqa: E402
import tifffile  # noqa: E402
from _common import wall_cpu_ms, write_json  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from phenossl.cells.crops import crop_cells  # noqa: E402
from phenossl.cells.segment import (  # noqa: E402
    Segmentation,
    cell_table,
    segment,
    segment_cells,
    segment_nuclei,
)
from phenossl.data.fields import normalize_percentiles, read_channel, read_field  # noqa: E402
from phenossl.data.synthetic import default_treatments, render_field  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "segmentation.json"
FIELD_DIR = REPO.parent / "shared" / "data" / "bbbc021" / "Week2" / "Week2_24381"
TAGS = {"w1": "dapi", "w2": "tubulin", "w4": "actin"}


def real_field() -> dict[str, Path] | None:
    """The three channel files of the real field, or None when the data is absent."""
    files = {}
    for path in sorted(FIELD_DIR.glob("Week2_180607_B02_s1_w*.tif")):
        files[TAGS.get(path.name.split("_s1_")[1][:2], "?")] = path
    return files if {"dapi", "tubulin", "actin"} <= files.keys() else None


def synthetic_field(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Render a synthetic DMSO field (phenossl.data.synthetic) and write its three TIFFs."""
    control = next(t for t in default_treatments() if t.compound == "DMSO")
    image = render_field(control, np.random.default_rng(seed)).image
    paths = {}
    for name, channel in zip(("dapi", "tubulin", "actin"), image):
        paths[name] = folder / f"synthetic_{name}.tif"
        tifffile.imwrite(paths[name], channel)
    return paths


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and minimum wall time and median CPU time of ``fn`` (ms), after a warm-up."""
    wall, cpu = wall_cpu_ms(lambda _: fn(), repeats)
    return {
        "median_ms": round(statistics.median(wall), 2),
        "min_ms": round(min(wall), 2),
        "cpu_median_ms": round(statistics.median(cpu), 2),
    }


def plain_skimage(dapi: np.ndarray) -> np.ndarray:
    """The reference: Otsu + distance-transform watershed with peak_local_max markers."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    mask = dapi > threshold_otsu(dapi)
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=7, labels=ndi.label(mask)[0])
    markers = np.zeros(dapi.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = real_field()
        source = "real BBBC021 field Week2_24381/B02/s1"
        if paths is None:
            paths = synthetic_field(Path(tmp))
            source = "synthetic 1024x1280 DMSO field (real data absent)"
        files = [paths["dapi"], paths["tubulin"], paths["actin"]]

        raw = np.stack([read_channel(p) for p in files])
        image = normalize_percentiles(raw)
        nuclei = segment_nuclei(image[0])
        cells = segment_cells([image[1], image[2]], nuclei)
        table = cell_table(image, nuclei, cells)
        seg = Segmentation(nuclei, cells, table)
        crops = crop_cells(image, seg)

        load_before = os.getloadavg()
        stages = {
            "read": lambda: np.stack([read_channel(p) for p in files]),
            "normalise": lambda: normalize_percentiles(raw),
            "segment nuclei": lambda: segment_nuclei(image[0]),
            "segment cells": lambda: segment_cells([image[1], image[2]], nuclei),
            "measure (table)": lambda: cell_table(image, nuclei, cells),
            "crop": lambda: crop_cells(image, seg),
        }
        results = {name: timed(fn, args.repeats) for name, fn in stages.items()}
        total = {
            key: round(sum(r[key] for r in results.values()), 2)
            for key in ("median_ms", "min_ms", "cpu_median_ms")
        }
        end_to_end = timed(lambda: crop_cells(image, segment(read_field(*files))), args.repeats)
        reference = timed(lambda: plain_skimage(image[0]), max(5, args.repeats // 3))
        load_after = os.getloadavg()

    print(f"{source}: {len(seg)} cells, {len(crops)} crops ({crops.n_dropped} dropped at border)")
    print(f"{'stage':<24}{'median ms':>11}{'min ms':>9}{'cpu ms':>9}")
    for name, r in {**results, "total (sum of stages)": total}.items():
        print(f"{name:<24}{r['median_ms']:>11.1f}{r['min_ms']:>9.1f}{r['cpu_median_ms']:>9.1f}")
    for name, r in {
        "end to end (read_field + segment + crop_cells)": end_to_end,
        "for scale: plain skimage Otsu + EDT watershed": reference,
    }.items():
        print(f"{name}: median {r['median_ms']:.1f} ms, cpu {r['cpu_median_ms']:.1f} ms")
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    payload = {
        "source": source,
        "shape": list(image.shape),
        "repeats": args.repeats,
        "n_cells": len(seg),
        "n_crops": len(crops),
        "n_dropped": crops.n_dropped,
        "stages": results,
        "total": total,
        "end_to_end": end_to_end,
        "reference_plain_skimage_watershed": reference,
        "end_to_end_over_reference": round(end_to_end["median_ms"] / reference["median_ms"], 3),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": {v: os.environ[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
            "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        },
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-image": skimage.__version__,
        },
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
