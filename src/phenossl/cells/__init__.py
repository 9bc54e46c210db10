"""From a field to single cells: segmentation and crops."""
