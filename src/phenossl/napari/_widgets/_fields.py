"""Select fields: browse a field table (BBBC021, or a plate in any layout, or the images on
screen), select by compound, concentration, plate or the paper's subsets, and load the selection
as a stack of fields (read lazily, one field at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, PushButton, Table
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from phenossl.napari._layers import FIELD_AXIS, LayerData, stack_layers
from phenossl.napari._preload import preload_in_background
from phenossl.napari._session import session_for
from phenossl.napari._widgets._common import (
    field_on_screen,
    layers_with_role,
    remove_layers,
    show_layer,
)
from phenossl.napari._widgets._own import LayersPanel, PlatePanel, release_own_layers
from phenossl.napari._widgets._panels import collapsible, form, hint, pack_top
from phenossl.napari._widgets._runner import describe_error

ALL = ""
TOP_N = "top"
PAPER_N_TOP = 4
MAX_TABLE_ROWS = 2000
ROOT_TYPING_PAUSE_MS = 700
# layers that belong to a loaded selection and go when another one is loaded
_SELECTION_ROLES = ("channel", "nuclei", "cells", "clusters", "centres", "gallery")


class FieldsWidget(Container):
    """Browse a BBBC021 field table and load a selection of fields."""

    def __init__(self, napari_viewer: Any) -> None:
        preload_in_background()  # torch, for Embed and Train later (see _preload)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._updating = False

        self.root = FileEdit(
            mode="d",
            label="Plate folder",
            tooltip="A BBBC021 folder (it holds BBBC021_v1_image.csv and BBBC021_v1_moa.csv; "
            "image paths in the CSV are relative to it), or a plate in another layout (see "
            "'Plate layout'). Dropping the folder or the CSV on napari opens it here too.",
        )
        self.plate_panel = PlatePanel()
        self.layers_panel = LayersPanel(napari_viewer, self.session)
        self.plate_section = collapsible(
            "Plate layout and metadata (not BBBC021)", self.plate_panel
        )
        self.layers_section = collapsible("Images already on screen", self.layers_panel)
        self.summary = hint("No field table open.", muted=False)
        self.preset = ComboBox(
            label="Paper subset",
            choices=self._preset_choices,
            tooltip="The paper's subsets: a compound's four highest concentrations and the "
            "DMSO controls",
        )
        self.compound = ComboBox(label="Compound", choices=self._compound_choices)
        self.concentration = ComboBox(
            label="Concentration",
            choices=self._concentration_choices,
            tooltip="µM; 'four highest' keeps each selected compound's four highest",
        )
        self.plate = ComboBox(label="Plate", choices=self._plate_choices)
        self.include_dmso = CheckBox(
            text="add the DMSO controls", tooltip="DMSO fields of the selected plates"
        )
        self.only_existing = CheckBox(
            value=True,
            text="only fields whose files exist",
            tooltip="Leave out fields whose three channel TIFFs are not all on disk",
        )
        self.count = hint(muted=False)
        self.table = Table(value={"field": []}, label="Selected")
        self.table.read_only = True
        self.table.native.setMinimumHeight(180)
        self.table.native.verticalHeader().setVisible(False)
        self.table.native.horizontalHeader().setStretchLastSection(True)
        self.load_button = PushButton(
            text="Load selected fields",
            tooltip="Show the selected fields as a stack (the slider browses fields); the "
            "Segment, Embed and Train widgets work on them",
        )
        self.on_screen = hint(muted=False)
        self.on_screen.native.setStyleSheet("font-weight: bold;")
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "Open a plate folder (or drop it, or BBBC021's image CSV, on napari), select "
                    "fields and load them as a stack: the 'field' slider browses them. Or use "
                    "images already on screen."
                ),
                form(self.root),
                self.plate_section,
                self.layers_section,
                self.summary,
                form(
                    self.preset,
                    self.compound,
                    self.concentration,
                    self.plate,
                    self.include_dmso,
                    self.only_existing,
                ),
                self.count,
                self.table,
                self.load_button,
                self.on_screen,
            ],
        )
        pack_top(self)
        self._enable(False)
        # the path is typed letter by letter: open it once the typing pauses
        self._root_timer = QTimer()
        self._root_timer.setSingleShot(True)
        self._root_timer.setInterval(ROOT_TYPING_PAUSE_MS)
        self._root_timer.timeout.connect(self._open_typed_root)
        self.root.changed.connect(lambda *_: self._root_timer.start())
        self.preset.changed.connect(self._on_preset)
        self.compound.changed.connect(self._on_compound)
        for widget in (self.concentration, self.plate, self.include_dmso, self.only_existing):
            widget.changed.connect(self._on_filter)
        self.load_button.changed.connect(self.load)
        self.table.native.cellClicked.connect(self._on_row_clicked)
        self.viewer.dims.events.point.connect(self._show_on_screen)
        if self.session.table is not None and self.session.root is not None:
            self._use_table(self.session.table, self.session.root)

    # -- opening a table --------------------------------------------------------------------

    def _open_typed_root(self) -> None:
        root = Path(self.root.value)
        if root != self.session.root and root.is_dir():
            self.open_root(root)
        elif str(self.root.value).strip() not in ("", ".") and not root.exists():
            self.summary.value = f"{root} does not exist: choose a plate folder."
            self.summary.native.setStyleSheet("color: #ff6b6b;")

    def open_root(self, root: Path, image_csv: Path | None = None) -> bool:
        """Read the field table of a plate folder; a bad folder or CSV is a notification.

        The folder is read as BBBC021 (its CSV) or in the layout chosen under 'Plate layout'.
        Returns whether the table was opened.
        """
        root = Path(root)
        if not root.is_dir():
            return self._fail(f"{root} is not a folder; choose a plate folder")
        try:
            table = self.plate_panel.read_table(root, image_csv)
        except (OSError, ValueError) as err:
            return self._fail(describe_error(err))
        if self.root.value != root:
            with self.root.changed.blocked():
                self.root.value = root
        self._root_timer.stop()
        self.session.set_table(table, root)
        self._use_table(table, root)
        return True

    def _fail(self, message: str) -> bool:
        self.summary.value = f"Could not open the field table: {message}"
        self.summary.native.setStyleSheet("color: #ff6b6b;")
        show_error(f"Select fields: {message}")
        return False

    def _use_table(self, table: pd.DataFrame, root: Path) -> None:
        from phenossl.data.bbbc021 import summarize_missing

        missing = summarize_missing(table)
        self.summary.native.setStyleSheet("")
        self.summary.value = (
            f"{_count(len(table), 'field')}, {_count(table['plate'].nunique(), 'plate')}, "
            f"{_count(table['compound'].nunique(), 'compound')}. "
            + (
                "All files present."
                if not missing.n_missing
                else f"{_count(missing.n_existing, 'field')} with their three files on disk."
            )
        )
        with self._setting_selectors():
            for combo in (self.preset, self.compound, self.plate):
                combo.reset_choices()
                combo.value = ALL
            self._fill_concentrations()
            self.include_dmso.value = False
        self._enable(True)
        self._refresh()

    def _enable(self, enabled: bool) -> None:
        for widget in (
            self.preset,
            self.compound,
            self.concentration,
            self.plate,
            self.include_dmso,
            self.only_existing,
            self.load_button,
        ):
            widget.enabled = enabled

    # -- selection ------------------------------------------------------------------------

    def apply_preset(self, compound: str) -> None:
        """Select the paper's subset of ``compound``: 4 highest concentrations + DMSO."""
        self.preset.value = compound

    def _on_preset(self, compound: str) -> None:
        if self._updating or not compound:
            return
        with self._setting_selectors():
            self.compound.value = compound
            self._fill_concentrations()
            self.concentration.value = TOP_N
            self.include_dmso.value = True
        self._refresh()

    def _on_compound(self, _: Any) -> None:
        if self._updating:
            return
        with self._setting_selectors():
            self._fill_concentrations()
            self.preset.value = ALL
        self._refresh()

    def _on_filter(self, _: Any) -> None:
        if self._updating:
            return
        with self._setting_selectors():
            self.preset.value = ALL
        self._refresh()

    @contextmanager
    def _setting_selectors(self) -> Iterator[None]:
        """Set several selectors at once: their change handlers ignore what happens inside."""
        self._updating = True
        try:
            yield
        finally:
            self._updating = False

    def _fill_concentrations(self) -> None:
        self.concentration.reset_choices()
        self.concentration.value = ALL

    # choices are callables, so that napari's reset_choices() (on every layer change) keeps them

    def _preset_choices(self, _: Any = None) -> list[tuple[str, str]]:
        from phenossl.data.bbbc021 import DMSO

        table = self.session.table
        compounds = [] if table is None else sorted(table["compound"].unique(), key=str.lower)
        return [("custom selection", ALL)] + [
            (f"{c}: {PAPER_N_TOP} highest concentrations + DMSO", c) for c in compounds if c != DMSO
        ]

    def _compound_choices(self, _: Any = None) -> list[tuple[str, str]]:
        table = self.session.table
        compounds = [] if table is None else sorted(table["compound"].unique(), key=str.lower)
        return [("all compounds", ALL)] + [(c, c) for c in compounds]

    def _plate_choices(self, _: Any = None) -> list[tuple[str, str]]:
        table = self.session.table
        plates = [] if table is None else sorted(table["plate"].unique())
        return [("all plates", ALL)] + [(p, p) for p in plates]

    def _concentration_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        choices: list[tuple[str, Any]] = [
            ("all concentrations", ALL),
            (f"{PAPER_N_TOP} highest (paper)", TOP_N),
        ]
        table = self.session.table
        compound = getattr(self, "compound", None)
        if table is not None and compound is not None and compound.value:
            values = sorted(
                table.loc[table["compound"] == compound.value, "concentration"].unique()
            )
            choices += [(f"{c:g} µM", float(c)) for c in values]
        return choices

    def selection(self) -> pd.DataFrame:
        """The field-table rows the filters select (in table order)."""
        from phenossl.data.bbbc021 import select_fields

        table = self.session.table
        if table is None:
            return pd.DataFrame()
        concentration = self.concentration.value
        return select_fields(
            table,
            compounds=self.compound.value or None,
            concentrations=concentration if isinstance(concentration, float) else None,
            plates=self.plate.value or None,
            n_top=PAPER_N_TOP if concentration == TOP_N else None,
            include_dmso=self.include_dmso.value,
            only_existing=self.only_existing.value,
        )

    def _refresh(self) -> None:
        try:
            selected = self.selection()
        except ValueError as err:
            self.count.value = describe_error(err)
            return
        n_files = int(selected["exists"].fillna(False).astype(bool).sum()) if len(selected) else 0
        if selected.empty:
            self.count.value = "No field matches the selection."
        else:
            self.count.value = (
                f"{_count(len(selected), 'field')} selected: "
                f"{_count(selected['treatment'].nunique(), 'treatment')} on "
                f"{_count(selected['plate'].nunique(), 'plate')}; {n_files:,} with files."
            )
        shown = selected.head(MAX_TABLE_ROWS)
        self.table.value = _table_view(shown)
        self.table.native.resizeColumnsToContents()
        if len(selected) > MAX_TABLE_ROWS:
            self.count.value += f" The table lists the first {MAX_TABLE_ROWS:,}."
        self.load_button.enabled = n_files > 0

    # -- loading ----------------------------------------------------------------------------

    def prepare_load(self) -> list[LayerData]:
        """Make the selected fields with files the loaded selection; return their stack layers.

        The layers of a previous selection (channels and results) are removed.
        """
        selected = self.selection()
        if selected.empty:
            raise ValueError("no field is selected")
        fields = selected[selected["exists"].fillna(False).astype(bool)]
        if fields.empty:
            raise ValueError(
                f"none of the {len(selected):,} selected fields has its three files on disk"
            )
        number = self.session.selection + 1
        layers = stack_layers(fields, selection=number)
        release_own_layers(self.viewer)
        for role in _SELECTION_ROLES:
            remove_layers(self.viewer, layers_with_role(self.viewer, role))
        self.session.set_run(None)
        self.session.set_fields(fields)
        return layers

    def load(self) -> None:
        """Load the selection as a stack of fields; errors become notifications."""
        try:
            layers = self.prepare_load()
        except (OSError, ValueError) as err:
            show_error(f"Select fields: {describe_error(err)}")
            return
        for layer_data in layers:
            show_layer(self.viewer, layer_data, replace=False)
        self.viewer.dims.axis_labels = (FIELD_AXIS, "y", "x")
        self.viewer.dims.set_point(0, 0)
        self.viewer.reset_view()
        n = len(self.session.fields)
        show_info(f"Loaded {n:,} field(s); the '{FIELD_AXIS}' slider browses them.")
        self._show_on_screen()

    # -- the field on screen ----------------------------------------------------------------

    def _on_row_clicked(self, row: int, _column: int) -> None:
        fields = self.session.fields
        if fields is None:
            return
        field_id = self.table.data[row][0] if row < self.table.shape[0] else None
        index = self.session.field_index().get(field_id)
        if index is None:
            show_info(f"{field_id} is not loaded; click 'Load selected fields' first.")
            return
        self.viewer.dims.set_point(0, index)

    def _show_on_screen(self, *_: Any) -> None:
        from phenossl.napari._widgets._common import channel_layers

        layers = channel_layers(self.viewer)
        fields = self.session.fields
        if not layers or fields is None:
            self.on_screen.value = ""
            return
        try:
            field = field_on_screen(self.viewer, layers.values(), fields)
        except ValueError:
            self.on_screen.value = ""
            return
        if field.row is None or field.index is None:
            self.on_screen.value = ""
            return
        moa = field.row.get("moa")
        moa = moa if isinstance(moa, str) else "MOA not listed"
        self.on_screen.value = (
            f"On screen: field {field.index + 1} of {len(fields)}: {field.describe()} ({moa})"
        )


def _table_view(rows: pd.DataFrame) -> dict[str, list]:
    if rows.empty:
        return {"field": []}
    moa = rows["moa"].astype("string").fillna("–")
    files = rows["exists"].map({True: "yes", False: "missing"}).fillna("?")
    return {
        "field": rows["field_id"].tolist(),
        "compound": rows["compound"].tolist(),
        "concentration": [f"{c:g} µM" for c in rows["concentration"]],
        "files": files.tolist(),
        "MOA": moa.tolist(),
    }


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
