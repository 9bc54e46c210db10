"""The napari plugin: a thin GUI over the library."""
