"""Time rendering synthetic fields and writing the default synthetic plate.

Renders one field per default treatment at full BBBC021 size (1024 x 1280) and at the demo size
(512 x 640), then writes the default plate at the demo size. Prints a table and writes
benchmarks/results/bench_synthetic.json. CPU time is reported next to wall time because the
wall time of a shared machine includes other processes.

    PYTHONPATH=src python benchmarks/bench_synthetic.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import wall_cpu_ms, write_json

from phenossl.data.synthetic import default_treatments, render_field, write_synthetic_plate

RESULTS = Path(__file__).resolve().parent / "results" / "bench_synthetic.json"


def timed(fn: Callable[[int], object], repeats: int) -> dict[str, float]:
    """Median and minimum wall and CPU time of ``fn(i)`` in milliseconds, after a warm-up."""
    wall, cpu = wall_cpu_ms(fn, repeats)
    return {
        "wall_median_ms": round(statistics.median(wall), 1),
        "wall_min_ms": round(min(wall), 1),
        "cpu_median_ms": round(statistics.median(cpu), 1),
        "cpu_min_ms": round(min(cpu), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    results: dict[str, dict] = {}
    treatments = {t.name: t for t in default_treatments()}
    for shape in ((1024, 1280), (512, 640)):
        for name in ("DMSO@0", "nocodazole@3", "taxol@3", "cytochalasin B@30"):
            t = treatments[name]
            key = f"render_field {name} {shape[0]}x{shape[1]}"

            def render(i: int, t=t, shape=shape) -> None:
                render_field(t, np.random.default_rng(i + 1), shape)

            results[key] = timed(render, args.repeats)
            results[key]["cells"] = int(
                render_field(t, np.random.default_rng(0), shape).cells.max()
            )
            print(f"{key:45s} {results[key]}")

    tmp = Path(tempfile.mkdtemp())
    try:

        def write(i: int) -> None:
            write_synthetic_plate(tmp / "plate", seed=i + 1, shape=(512, 640), overwrite=True)

        key = "write_synthetic_plate default 512x640"
        results[key] = timed(write, max(1, args.repeats // 2))
        files = [p for p in (tmp / "plate").rglob("*") if p.is_file()]
        results[key]["fields"] = sum(1 for p in files if "_w1" in p.name)
        results[key]["megabytes"] = round(sum(p.stat().st_size for p in files) / 1e6, 1)
        print(f"{key:45s} {results[key]}")
    finally:
        shutil.rmtree(tmp)

    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
