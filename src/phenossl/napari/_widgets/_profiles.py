"""Treatment similarity: the profiles of the run on screen as a treatment x treatment heatmap.

A dock widget rather than a layer: the heatmap has its own axes (treatment names, ordered by
MOA) that must not share the fields' world coordinates, and it redraws itself whenever *Embed and
cluster* produces a new run. The numbers come from :func:`phenossl.profiles.score_profiles`
(DMSO-normalised mean profiles, cosine similarity; no compound contrasts, so it is quick).
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container

from phenossl.napari._session import EmbedRun, session_for
from phenossl.napari._widgets._panels import hint, pack_top


class ProfilesWidget(Container):
    """Cosine similarity of the treatment profiles of the run on screen, with NSC."""

    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.info = hint(muted=False)
        super().__init__(labels=False, widgets=[self.info])
        self.canvas = None
        self.scores = None
        pack_top(self)
        self.session.run_changed.connect(self._on_run)
        self._on_run(self.session.run)

    def _on_run(self, run: EmbedRun | None) -> None:
        from phenossl.profile_report import similarity_figure
        from phenossl.profiles import score_profiles

        self.scores = None
        if run is None:
            self._show(None, "No profiles yet: run 'Embed and cluster' first.")
            return
        cells = run.result.cells.reset_index(drop=True)
        if "moa" in cells.columns:
            cells = cells.assign(
                moa=cells["moa"].astype(object).where(cells["moa"].notna(), "unknown")
            )
        try:
            scores = score_profiles(run.result.embeddings, cells, contrasts=False)
        except ValueError as err:  # e.g. no DMSO cells among the loaded fields
            self._show(None, f"No treatment profiles for these fields: {err}")
            return
        self.scores = scores
        s = scores.scores()
        nsc = "n/a" if s["nsc"] is None else f"{s['nsc']:.2f}"
        self._show(
            similarity_figure(scores),
            f"{s['n_treatments']} treatments from {s['n_cells']:,} cells; 1-NN MOA accuracy "
            f"(NSC, {s['n_queries']['nsc']} queries): {nsc}.",
        )

    def _show(self, figure: Any, message: str) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        self.info.value = message
        layout = self.native.layout()
        if self.canvas is not None:
            layout.removeWidget(self.canvas)
            self.canvas.deleteLater()
            self.canvas = None
        if figure is not None:
            self.canvas = FigureCanvasQTAgg(figure)
            self.canvas.setMinimumSize(300, 300)
            layout.addWidget(self.canvas)
