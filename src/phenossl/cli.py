"""The ``phenossl`` command: thin subcommands that parse, call the library and print.

Heavy imports (torch, scikit-image) happen inside the subcommands so ``phenossl --help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from phenossl import __version__

Handler = Callable[[argparse.Namespace], int]


class CLIError(Exception):
    """An error to print as one line and exit 2 (bad input, not a bug)."""


def _progress(args: argparse.Namespace, desc: str, unit: str = "it"):
    from phenossl._progress import tqdm_callback

    return tqdm_callback(desc, unit=unit, disable=getattr(args, "quiet", False))


def _run(gen, args: argparse.Namespace, desc: str, unit: str = "it"):
    from phenossl._progress import run

    callback, close = _progress(args, desc, unit)
    try:
        return run(gen, callback)
    finally:
        close()


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------- segment


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment nuclei and cells of one 3-channel field",
        description="Segment one field: writes nuclei.tif and cells.tif (label images) and "
        "cells.csv (one row per cell) into --out, and prints the cell count.",
    )
    p.add_argument("--dapi", required=True, type=Path, help="DAPI (nuclei) channel TIFF")
    p.add_argument("--tubulin", required=True, type=Path, help="Tubulin channel TIFF")
    p.add_argument("--actin", required=True, type=Path, help="Actin channel TIFF")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(handler=_cmd_segment)


def _cmd_segment(args: argparse.Namespace) -> int:
    import tifffile

    from phenossl.cells.segment import segment
    from phenossl.data.fields import read_field

    callback, close = _progress(args, "segment", "step")
    from phenossl._progress import Progress

    try:
        callback(Progress(0, 3, "reading"))
        image = read_field(args.dapi, args.tubulin, args.actin)
        callback(Progress(1, 3, "segmenting"))
        seg = segment(image)
        callback(Progress(2, 3, "writing"))
        args.out.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(args.out / "nuclei.tif", seg.nuclei, compression="zlib")
        tifffile.imwrite(args.out / "cells.tif", seg.cells, compression="zlib")
        seg.table.to_csv(args.out / "cells.csv", index=False)
        callback(Progress(3, 3, "done"))
    finally:
        close()
    print(f"{len(seg.table)} cells -> {args.out}")
    return 0


# --------------------------------------------------------------------------- crops


def _add_field_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("field selection (default: every field whose files exist)")
    g.add_argument("--compound", action="append", default=None, help="keep this compound (repeat)")
    g.add_argument(
        "--concentration", action="append", type=float, default=None, help="keep this concentration"
    )
    g.add_argument("--plate", action="append", default=None, help="keep this plate (repeat)")
    g.add_argument(
        "--paper-subset",
        metavar="COMPOUND",
        help="the paper's subset: COMPOUND's --n-top highest concentrations + as many DMSO cells, "
        "split 70/10/20 train/val/test",
    )
    g.add_argument("--n-top", type=int, default=4, help="concentrations kept by --paper-subset")
    g.add_argument("--limit", type=int, default=None, help="process at most this many fields")


def _add_crops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crops",
        help="BBBC021 root (or synthetic plate) -> CropSet of 196x196 single-cell crops",
        description="Segment the selected fields of a BBBC021-layout folder and write centred "
        "single-cell crops plus a per-cell table (a CropSet) to --out.",
    )
    p.add_argument("root", type=Path, help="folder holding BBBC021_v1_image.csv and the images")
    p.add_argument("--out", required=True, type=Path, help="CropSet folder to create")
    _add_field_selection(p)
    p.add_argument("--size", type=int, default=196, help="crop size in pixels (default 196)")
    p.add_argument("--border", choices=["drop", "pad"], default="drop", help="border policy")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: in-process)")
    p.add_argument("--seed", type=int, default=0, help="seed for subset sampling")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(handler=_cmd_crops)


def select_fields_from_args(table, args: argparse.Namespace):
    """Apply the CLI's field-selection flags to a field table."""
    from phenossl.data.bbbc021 import select_fields

    if args.paper_subset:
        sel = select_fields(
            table, compounds=[args.paper_subset], n_top=args.n_top, include_dmso=True
        )
    else:
        sel = select_fields(
            table,
            compounds=args.compound,
            concentrations=args.concentration,
            plates=args.plate,
        )
    sel = sel[sel["exists"]]
    if args.limit is not None:
        sel = sel.head(args.limit)
    if sel.empty:
        raise CLIError("no field with all three images matches the selection")
    return sel


def _cmd_crops(args: argparse.Namespace) -> int:
    from phenossl.data.bbbc021 import load_image_table
    from phenossl.workflows import iter_make_cropset

    table = load_image_table(args.root)
    fields = select_fields_from_args(table, args)
    summary = _run(
        iter_make_cropset(
            fields,
            args.out,
            crop_size=args.size,
            border=args.border,
            workers=args.workers,
            paper_subset=args.paper_subset,
            n_top=args.n_top,
            seed=args.seed,
            overwrite=args.overwrite,
        ),
        args,
        "crops",
        "field",
    )
    n_missing = int((~table["exists"]).sum())
    print(
        f"{summary['cells']} crops from {summary['fields_processed']} fields -> {args.out} "
        f"({summary['cells_dropped_at_border']} cells dropped at the border, "
        f"{summary['fields_failed']} fields failed, {n_missing} fields of the table missing)"
    )
    for failure in summary["failures"]:
        print(f"  failed: {failure['field_id']}: {failure['error']}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- embed


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="vgg13_bn",
        help="backbone name (vgg11..vgg19[_bn], resnet18..152, convnext_tiny) or a phenossl "
        "checkpoint file (default vgg13_bn)",
    )
    p.add_argument(
        "--weights",
        choices=["random", "imagenet"],
        default="random",
        help="for a backbone name: random init, or ImageNet weights from the local torch cache",
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="resize crops to this size before the model (default: the crop size)",
    )


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="CropSet -> embeddings file (.npz)",
        description="Embed every crop of a CropSet with a backbone or a phenossl checkpoint.",
    )
    p.add_argument("cropset", type=Path, help="CropSet folder (from `phenossl crops`)")
    p.add_argument("--out", required=True, type=Path, help="embeddings file to write (.npz)")
    _add_model_options(p)
    p.set_defaults(handler=_cmd_embed)


def _cmd_embed(args: argparse.Namespace) -> int:
    from phenossl.cells.crops import CropSet
    from phenossl.embedding import iter_embed, save_embeddings

    crops = CropSet(args.cropset)
    weights = None if args.weights == "random" else args.weights
    features = _run(
        iter_embed(
            crops,
            args.model,
            weights=weights,
            device=args.device,
            batch_size=args.batch_size,
            input_size=args.input_size,
        ),
        args,
        "embed",
        "cell",
    )
    meta = {
        "cropset": str(args.cropset.resolve()),
        "model": str(args.model),
        "weights": weights,
        "input_size": args.input_size,
    }
    save_embeddings(args.out, features, crops.table["cell_id"].to_numpy(), meta)
    print(f"{features.shape[0]} embeddings of dimension {features.shape[1]} -> {args.out}")
    return 0


# --------------------------------------------------------------------------- cluster


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="embeddings -> KMeans report (AMI, randomised-label control, composition, montage)",
        description="Cluster embeddings with KMeans and score the clusters against a label "
        "column with the adjusted mutual information; writes report.json, composition.csv, "
        "clusters.csv and montage.png into --out.",
    )
    p.add_argument("embeddings", type=Path, help="embeddings file from `phenossl embed`")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument(
        "--cropset", type=Path, default=None, help="CropSet (default: the one recorded in the file)"
    )
    p.add_argument("-k", "--k", type=int, default=2, help="number of clusters (default 2)")
    p.add_argument(
        "--label",
        default="treatment",
        help="column to score against: compound, concentration, treatment, moa, ... (default "
        "treatment)",
    )
    p.add_argument("--split", default=None, help="only cells of this split (train/val/test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=10, help="KMeans restarts")
    p.add_argument("--permutations", type=int, default=10, help="label permutations for control")
    p.add_argument("--nearest", type=int, default=8, help="cells per cluster in the montage")
    p.set_defaults(handler=_cmd_cluster)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from phenossl.cells.crops import CropSet
    from phenossl.embedding import load_embeddings
    from phenossl.workflows import write_cluster_report

    features, cell_ids, meta = load_embeddings(args.embeddings)
    cropset_path = args.cropset or (Path(meta["cropset"]) if meta.get("cropset") else None)
    if cropset_path is None:
        raise CLIError(f"{args.embeddings} records no CropSet; pass --cropset")
    crops = CropSet(cropset_path)
    report = write_cluster_report(
        args.out,
        features,
        crops,
        cell_ids=cell_ids,
        k=args.k,
        label_column=args.label,
        split=args.split,
        seed=args.seed,
        n_init=args.n_init,
        n_permutations=args.permutations,
        n_nearest=args.nearest,
        extra={"embeddings": str(args.embeddings), **meta},
    )
    print(_format_ami(report))
    print(f"report -> {args.out / 'report.json'}")
    return 0


def _format_ami(report: dict[str, Any]) -> str:
    return (
        f"AMI ({report['label_column']}, K={report['k']}, {report['n_cells']} cells): "
        f"{report['ami']:.3f}   randomised-label control: "
        f"{report['ami_control_mean']:.3f} ± {report['ami_control_std']:.3f}"
    )


# --------------------------------------------------------------------------- synth


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic BBBC021-like plate (official layout, known treatments)",
        description="Write a small plate in the official BBBC021 layout (CSVs + 16-bit TIFFs) "
        "whose treatments (DMSO, nocodazole, taxol, cytochalasin B) have distinct morphologies.",
    )
    p.add_argument("out", type=Path, help="folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="field size in pixels (default: the library's default)",
    )
    p.add_argument("--sites", type=int, default=None, help="fields per well")
    p.add_argument("--wells", type=int, default=None, help="wells per treatment")
    p.add_argument("--ground-truth", action="store_true", help="also write true label images")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from phenossl.data.synthetic import iter_write_synthetic_plate

    kwargs: dict[str, Any] = {"seed": args.seed, "overwrite": args.overwrite}
    if args.shape is not None:
        kwargs["shape"] = tuple(args.shape)
    if args.sites is not None:
        kwargs["sites"] = args.sites
    if args.wells is not None:
        kwargs["n_wells_per_treatment"] = args.wells
    if args.ground_truth:
        kwargs["ground_truth"] = True
    root = _run(iter_write_synthetic_plate(args.out, **kwargs), args, "synth", "field")
    print(f"synthetic plate -> {root}")
    return 0


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic plate -> cells -> embeddings -> clusters -> report, in a few CPU minutes",
        description="End-to-end demo on a synthetic plate: nocodazole (4 concentrations) vs "
        "DMSO, KMeans K=2, AMI next to its randomised-label control.",
    )
    p.add_argument("--out", type=Path, default=Path("phenossl-demo"), help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from phenossl.workflows import iter_demo

    report = _run(
        iter_demo(args.out, seed=args.seed, device=args.device, overwrite=args.overwrite),
        args,
        "demo",
        "step",
    )
    print(_format_ami(report))
    print(f"report -> {args.out / 'report' / 'report.json'}")
    return 0


# --------------------------------------------------------------------------- main

_ADDERS = (_add_segment, _add_crops, _add_embed, _add_cluster, _add_synth, _add_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``phenossl`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="phenossl",
        description="Cell phenotypes from fluorescence microscopy with self-supervised learning.",
    )
    parser.add_argument("--version", action="version", version=f"phenossl {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _ADDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phenossl`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (CLIError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"phenossl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
