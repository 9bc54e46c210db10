"""What the widgets of one viewer share: the field table, the loaded fields, the last run.

One :class:`Session` per viewer (:func:`session_for`). Widgets read it and listen to its signals
instead of holding references to each other, so each one works alone and in any order.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psygnal import Signal

from phenossl.napari._heap import release_for_removals


@dataclass
class EmbedRun:
    """One finished "Embed and cluster" run, as shown on screen and exported."""

    result: Any  # phenossl.pipeline.PipelineResult
    options: Any  # phenossl.pipeline.PipelineOptions
    model_label: str
    fields: pd.DataFrame
    params: dict[str, Any]
    gallery: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    selection: int = 0  # the session's selection number the run was computed on

    def matches(self, selection: int, fields: pd.DataFrame | None) -> bool:
        """Whether the run was computed on selection number ``selection`` and ``fields``."""
        return self.selection == selection and same_fields(self.fields, fields)


class Session:
    """State shared by the phenossl widgets of one viewer."""

    table_loaded = Signal(object)  # the field table
    fields_loaded = Signal(object)  # the loaded fields (DataFrame)
    run_changed = Signal(object)  # EmbedRun or None
    checkpoint_added = Signal(object)  # Path

    def __init__(self) -> None:
        self.root: Path | None = None
        self.table: pd.DataFrame | None = None
        self.fields: pd.DataFrame | None = None
        self.selection = 0  # increments with every load; result layers name theirs
        self.segment_params: dict[str, Any] = {}
        self.percentiles: tuple[float, float] = (1.0, 99.8)
        self.run: EmbedRun | None = None
        self.checkpoints: list[Path] = []

    def set_table(self, table: pd.DataFrame, root: Path) -> None:
        self.table, self.root = table, root
        self.table_loaded.emit(table)

    def set_fields(self, fields: pd.DataFrame) -> int:
        """Make ``fields`` the loaded selection; returns its selection number."""
        self.selection += 1
        self.fields = fields.reset_index(drop=True)
        self.fields_loaded.emit(self.fields)
        return self.selection

    def field_index(self) -> dict[str, int]:
        """Field id -> position in the loaded stack."""
        if self.fields is None:
            return {}
        return {fid: i for i, fid in enumerate(self.fields["field_id"])}

    def set_run(self, run: EmbedRun | None) -> None:
        self.run = run
        self.run_changed.emit(run)

    def add_checkpoint(self, path: Path) -> None:
        path = Path(path)
        if path not in self.checkpoints:
            self.checkpoints.append(path)
        self.checkpoint_added.emit(path)


def same_fields(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    """Whether two field tables list the same fields in the same order (None: no fields)."""
    if a is None or b is None or a.empty or b.empty:
        return (a is None or a.empty) and (b is None or b.empty)
    return a["field_id"].astype(str).tolist() == b["field_id"].astype(str).tolist()


# Keyed by id(): napari's viewer compares by value (pydantic), and a value that is not equal to
# itself (NaN in the camera or dims) would make a WeakKeyDictionary lose it.
_SESSIONS: dict[int, tuple[weakref.ref, Session]] = {}


def _forget(key: int, _ref: object) -> None:
    _SESSIONS.pop(key, None)


def session_for(viewer: Any) -> Session:
    """The session of ``viewer`` (created on first use, dropped with the viewer).

    napari hands plugin widgets a proxy of the viewer (a new one each time): the session
    belongs to the viewer behind it.
    """
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    entry = _SESSIONS.get(key)
    if entry is not None and entry[0]() is viewer:
        return entry[1]
    session = Session()
    _SESSIONS[key] = (weakref.ref(viewer, partial(_forget, key)), session)
    release_for_removals(viewer)  # runs freeze the heap; napari's removals must see it all
    return session
