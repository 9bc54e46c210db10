"""The plugin's dock widgets, one module each; napari.yaml points at these classes."""

from phenossl.napari._widgets._embed import EmbedWidget
from phenossl.napari._widgets._export import ExportWidget
from phenossl.napari._widgets._fields import FieldsWidget
from phenossl.napari._widgets._profiles import ProfilesWidget
from phenossl.napari._widgets._segment import SegmentWidget
from phenossl.napari._widgets._train import TrainWidget

__all__ = [
    "EmbedWidget",
    "ExportWidget",
    "FieldsWidget",
    "ProfilesWidget",
    "SegmentWidget",
    "TrainWidget",
]
