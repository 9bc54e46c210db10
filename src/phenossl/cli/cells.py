"""`phenossl segment`, `crops`, `import-crops` and `synth`: from fields (or others' crops) to cells."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from phenossl.cli._common import (
    CLIError,
    add_command,
    nonnegative_int,
    positive_int,
    progress_bar,
    run_with_progress,
    writable_folder,
)


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "segment", _cmd_segment)
    p.add_argument("--dapi", required=True, type=Path, help="DAPI (nuclei) channel TIFF")
    p.add_argument("--tubulin", required=True, type=Path, help="Tubulin channel TIFF")
    p.add_argument("--actin", required=True, type=Path, help="Actin channel TIFF")
    p.add_argument("--out", required=True, type=Path, help="output folder")


def _cmd_segment(args: argparse.Namespace) -> int:
    """segment nuclei and cells of one 3-channel field

    Segment one field: writes nuclei.tif and cells.tif (label images) and cells.csv (one row per
    cell) into --out, and prints the cell count.
    """

    import tifffile

    from phenossl.cells.segment import segment
    from phenossl.data.fields import read_field

    writable_folder(args.out, "--out")
    callback, close = progress_bar(args, "segment", "step")
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
    g.add_argument(
        "--n-top", type=positive_int, default=4, help="concentrations kept by --paper-subset"
    )
    g.add_argument(
        "--limit", type=positive_int, default=None, help="process at most this many fields"
    )


def _add_crops(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "crops", _cmd_crops)
    p.add_argument(
        "root",
        type=Path,
        help="folder holding BBBC021_v1_image.csv and the images, or a plate folder in the "
        "--layout",
    )
    p.add_argument("--out", required=True, type=Path, help="CropSet folder to create")
    _add_plate_layout(p)
    _add_field_selection(p)
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="crop size in pixels (default: the size --model was trained on; 196 is the paper's)",
    )
    p.add_argument(
        "--model",
        default="phenossl-cells",
        help="the model the crops are for: its crop size is the default --size (default "
        "phenossl-cells, 68 px single-cell crops; a model that does not say gets 196)",
    )
    p.add_argument("--border", choices=["drop", "pad"], default="drop", help="border policy")
    p.add_argument(
        "--workers", type=nonnegative_int, default=0, help="worker processes (0: in-process)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for subset sampling")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _add_plate_layout(p: argparse.ArgumentParser) -> None:
    from phenossl.data.plate_layout import PRESETS

    g = p.add_argument_group("plate layout (a plate that is not in BBBC021's CSV layout)")
    g.add_argument(
        "--layout",
        default=None,
        help="read the fields from the file names: a preset ("
        + ", ".join(PRESETS)
        + ") or a pattern such as '{plate}/{*}_{well}_s{site}_w{channel}{*}.tif' (fields plate, "
        "well or row+col, site, channel; {*} any text) or a regex with those named groups",
    )
    g.add_argument(
        "--channels",
        default=None,
        metavar="TOKEN=CHANNEL,...",
        help="channel token in the file names -> model channel, e.g. '1=DAPI,2=Tubulin,3=Actin' "
        "(default: the preset's)",
    )
    g.add_argument(
        "--metadata",
        type=Path,
        default=None,
        help="CSV with a 'well' column (and 'plate' to join on both) and any of compound, "
        "concentration, treatment, moa",
    )


def load_table_from_args(args: argparse.Namespace):
    """The field table of ``args.root``: the BBBC021 CSV, or a plate in ``--layout``."""
    from phenossl.data.bbbc021 import IMAGE_CSV
    from phenossl.data.plate_layout import layout_from, load_plate

    layout = getattr(args, "layout", None)
    if layout is None and not (args.root / IMAGE_CSV).is_file():
        raise CLIError(
            f"{args.root} holds no {IMAGE_CSV}; for another plate layout pass --layout "
            "(a preset or a file-name pattern)"
        )
    try:
        layout = None if layout is None else layout_from(layout, args.channels)
        return load_plate(args.root, layout, args.metadata)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from err


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
    """BBBC021 root (or synthetic plate) -> CropSet of single-cell crops (68 px for the shipped
    model, 196 for the paper's)

    Segment the selected fields of a BBBC021-layout folder and write centred single-cell crops plus
    a per-cell table (a CropSet) to --out.
    """

    from phenossl.pipeline import iter_make_cropset, resolve_crop_size

    table = load_table_from_args(args)
    fields = select_fields_from_args(table, args)
    summary = run_with_progress(
        iter_make_cropset(
            fields,
            args.out,
            crop_size=resolve_crop_size(args.size, args.model),
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


def _add_import_crops(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "import-crops", _cmd_import_crops)
    p.add_argument("source", type=Path, help=".npy / .npz crops file, or a folder of images")
    p.add_argument("--table", required=True, type=Path, help="per-cell CSV, one row per crop")
    p.add_argument("--out", required=True, type=Path, help="CropSet folder to create")
    p.add_argument(
        "--channels",
        default="DAPI,Tubulin,Actin",
        help="the source's channels in order, comma-separated (DAPI, Tubulin, Actin; '-' drops "
        "one), e.g. Actin,Tubulin,DAPI (default DAPI,Tubulin,Actin)",
    )
    p.add_argument("--layout", choices=["auto", "nchw", "nhwc"], default="auto")
    p.add_argument(
        "--normalize",
        choices=["plate", "crop", "none"],
        default="plate",
        help="to uint8 by percentiles per plate and channel (default), per crop, or none "
        "(uint8 input kept as is)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=(1.0, 99.8),
        help="percentiles mapped to 0 and 255 (default 1 99.8, as `phenossl crops`)",
    )
    p.add_argument("--plate-column", default="plate", help="column naming each crop's plate")
    p.add_argument(
        "--holdout",
        metavar="QUERY",
        default=None,
        help="pandas query of held-out rows, e.g. 'replicate != 1': writes split = test for "
        "them and train for the rest (a plate may not be on both sides)",
    )
    p.add_argument("--key", default=None, help="array name in an .npz holding several")
    p.add_argument(
        "--file-column",
        action="append",
        default=None,
        help="folder source: column of image file names (default 'file'); repeat once per "
        "channel for single-channel files",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _cmd_import_crops(args: argparse.Namespace) -> int:
    """crops made elsewhere (.npy/.npz array or a folder of images) + CSV -> CropSet

    Import single-cell crops from other tools into a CropSet: an array file (N, C, H, W) or
    (N, H, W, C), or a folder of single-cell image files named by a column of --table. Channels
    are reordered to DAPI, Tubulin, Actin and intensities mapped to uint8 (robust percentiles per
    plate and channel by default). Every column of --table is kept in cells.csv (a column 'index'
    becomes 'source_index').
    """

    import json

    from phenossl.cells.import_crops import iter_import_crops

    crops = run_with_progress(
        iter_import_crops(
            args.source,
            args.table,
            args.out,
            channels=args.channels,
            layout=args.layout,
            normalize=args.normalize,
            percentiles=tuple(args.percentiles),
            plate_column=args.plate_column,
            holdout=args.holdout,
            key=args.key,
            file_columns=args.file_column or ("file",),
            overwrite=args.overwrite,
        ),
        args,
        "import-crops",
        "crop",
    )
    summary = json.loads((args.out / "import.json").read_text())
    split = summary["split"]
    parts = [f"{len(crops)} crops of {crops.size} px -> {args.out}", f"normalize={args.normalize}"]
    if split:
        parts.append(", ".join(f"{n} {name}" for name, n in sorted(split.items(), reverse=True)))
    for old, new in summary["renamed_columns"].items():
        parts.append(f"column {old!r} renamed {new!r}")
    print("; ".join(parts))
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "synth", _cmd_synth)
    p.add_argument("out", type=Path, help="folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shape",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="field size in pixels (default: the library's default)",
    )
    p.add_argument("--sites", type=positive_int, default=None, help="fields per well")
    p.add_argument("--wells", type=positive_int, default=None, help="wells per treatment")
    p.add_argument("--ground-truth", action="store_true", help="also write true label images")
    p.add_argument("--overwrite", action="store_true")


def _cmd_synth(args: argparse.Namespace) -> int:
    """write a synthetic BBBC021-like plate (official layout, known treatments)

    Write a small plate in the official BBBC021 layout (CSVs + 16-bit TIFFs) whose treatments (DMSO,
    nocodazole, taxol, cytochalasin B) have distinct morphologies.
    """

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
    root = run_with_progress(iter_write_synthetic_plate(args.out, **kwargs), args, "synth", "field")
    print(f"synthetic plate -> {root}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `segment`, `crops`, `import-crops` and `synth`."""
    _add_segment(sub)
    _add_crops(sub)
    _add_import_crops(sub)
    _add_synth(sub)
