"""Time reading + normalising one real BBBC021 field, and loading the full field table.

Compares the TIFF reading paths (tifffile, bioio-tifffile's Reader, bioio.BioImage) and the
percentile computations (np.percentile vs the exact histogram) on the real 1024 x 1280 field in
../shared/data/bbbc021. Prints a table and writes benchmarks/results/bench_fields.json.

    PYTHONPATH=src python benchmarks/bench_fields.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import write_json

from phenossl.data.bbbc021 import load_image_table
from phenossl.data.fields import channel_percentiles, read_channel, read_field

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "bench_fields.json"
ROOT = REPO.parent / "shared" / "data" / "bbbc021"
FIELD = "Week2_24381/B02/s1"


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and minimum wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import bioio
    import bioio_tifffile
    import tifffile

    table = load_image_table(ROOT)
    row = table.set_index("field_id").loc[FIELD]
    dapi = row["dapi"]
    channel = read_channel(dapi)
    q = (1.0, 99.8)
    cases: dict[str, Callable[[], object]] = {
        "channel: tifffile.imread": lambda: tifffile.imread(dapi),
        "channel: bioio_tifffile.Reader(path).data": lambda: bioio_tifffile.Reader(dapi).data,
        "channel: BioImage(path, reader=bioio_tifffile.Reader).get_image_data('YX')": lambda: (
            bioio.BioImage(dapi, reader=bioio_tifffile.Reader).get_image_data("YX")
        ),
        "channel: BioImage(path).get_image_data('YX') (plugin lookup)": lambda: bioio.BioImage(
            dapi
        ).get_image_data("YX"),
        "channel: read_channel": lambda: read_channel(dapi),
        "channel percentiles: np.percentile": lambda: np.percentile(channel, q),
        "channel percentiles: channel_percentiles (histogram)": lambda: channel_percentiles(
            channel, q
        ),
        "field: read_field(row, normalize=False)": lambda: read_field(row, normalize=False),
        "field: read_field(row)": lambda: read_field(row),
    }
    results = {name: timed(fn, args.repeats) for name, fn in cases.items()}
    results["table: load_image_table (13,200 rows, check_files)"] = timed(
        lambda: load_image_table(ROOT), max(3, args.repeats // 5)
    )
    width = max(map(len, results))
    for name, r in results.items():
        print(f"{name:<{width}}  median {r['median_ms']:8.2f} ms  min {r['min_ms']:8.2f} ms")
    payload = {
        "field": FIELD,
        "shape": list(channel.shape),
        "dtype": str(channel.dtype),
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
        "versions": {
            "numpy": np.__version__,
            "tifffile": tifffile.__version__,
            "bioio": bioio.__version__,
            "bioio_tifffile": getattr(bioio_tifffile, "__version__", "unknown"),
        },
        "results": results,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
