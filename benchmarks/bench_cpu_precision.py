"""CPU training in full precision against bf16 autocast (``run.cpu_amp``), through the trainer.

For each case the real trainer (``iter_train``: augmentation, forward, loss, backward, step) runs
its second epoch with ``run.cpu_amp`` off and on, alternating (ABBA); each rate comes from the
fastest repeat. bf16 only takes effect on a CPU with bf16 instructions (AVX512-BF16 or AMX,
``phenossl._device.cpu_has_native_bf16``); elsewhere both paths run in float32 and the report
says so.

    python benchmarks/bench_cpu_precision.py              # four cases, about 6 minutes on 2 cores
    python benchmarks/bench_cpu_precision.py --steps 8 --repeats 3

Writes ``benchmarks/results/cpu_precision.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from _common import time_abba, torch_machine, write_json
from bench_training import CASES, Case, make_config, time_trainer, write_data

from phenossl._device import cpu_has_native_bf16
from phenossl.training.train.config import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_precision.json"

#: Fig. 4's MNIST network and batch (VGG11-BN, 32 px, batch 32), here on 3-channel images
MNIST_LIKE = replace(
    CASES[0],
    name="mocov2plus_vgg11_32px",
    method="mocov2plus",
    preset="mocov2plus_mnist",
    backbone="vgg11_bn",
    cifar_stem=False,
)


def bench_case(case: Case, steps: int, repeats: int) -> dict:
    size, batch = case.cpu_size, case.cpu_batch
    with tempfile.TemporaryDirectory(prefix="phenossl-bench-") as tmp:
        tmp = Path(tmp)
        root = write_data(case, tmp / "data", steps * batch, size)
        fp32 = make_config(case, root, size, batch, "cpu")
        bf16 = TrainConfig.from_dict(fp32.to_dict(), overrides={"run.cpu_amp": True})
        paths = {
            "float32": lambda: time_trainer(fp32, tmp / "fp32", steps),
            "cpu_amp": lambda: time_trainer(bf16, tmp / "bf16", steps),
        }
        seconds, cpu_seconds = time_abba(paths, repeats)
    rates = {key: steps * batch / min(values) for key, values in seconds.items()}
    return {
        "case": case.name,
        "method": case.method,
        "backbone": case.backbone,
        "size": size,
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "float32_images_per_s": round(rates["float32"], 2),
        "cpu_amp_images_per_s": round(rates["cpu_amp"], 2),
        "speedup": round(rates["cpu_amp"] / rates["float32"], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [MNIST_LIKE.name, *(c.name for c in CASES)]
    parser.add_argument("--cases", nargs="+", default=names, choices=names)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in (MNIST_LIKE, *CASES) if c.name in args.cases]
    report = {
        "benchmark": "CPU training: float32 vs bf16 autocast (run.cpu_amp), trainer epoch rate",
        **torch_machine(torch.device("cpu")),
        "cpu_has_native_bf16": cpu_has_native_bf16(),
        "repeats": args.repeats,
        "results": [bench_case(case, args.steps, args.repeats) for case in cases],
    }
    write_json(args.out, report)
    native = "" if report["cpu_has_native_bf16"] else " (no bf16 instructions: both float32)"
    print(f"cpu ({report['torch_threads']} threads){native}")
    for r in report["results"]:
        print(
            f"{r['case']:>22} {r['size']:>3} px batch {r['batch_size']:>3}: float32 "
            f"{r['float32_images_per_s']:8.1f} img/s  cpu_amp {r['cpu_amp_images_per_s']:8.1f} "
            f"img/s  speedup {r['speedup']:.2f}x"
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
