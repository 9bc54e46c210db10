"""Galleries: channel colours, tile layout, PNG output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from phenossl.montage import centroid_gallery, save_png, to_rgb


def _single_channel(channel: int, value: int = 200, size: int = 6) -> np.ndarray:
    crop = np.zeros((1, 3, size, size), dtype=np.uint8)
    crop[0, channel] = value
    return crop


@pytest.mark.parametrize(
    ("channel", "colour"),
    [(0, (0, 0, 200)), (1, (0, 200, 0)), (2, (200, 0, 0))],
    ids=["DAPI-blue", "Tubulin-green", "Actin-red"],
)
def test_each_channel_has_its_colour(channel, colour):
    rgb = to_rgb(_single_channel(channel))
    assert rgb.shape == (1, 6, 6, 3)
    assert rgb.dtype == np.uint8
    assert (rgb.reshape(-1, 3) == colour).all()


def test_channels_add_up_and_floats_are_scaled():
    crop = np.zeros((1, 3, 2, 2), dtype=np.float32)
    crop[0, 0], crop[0, 1], crop[0, 2] = 1.0, 0.5, 2.0  # 2.0 is clipped to 1
    assert to_rgb(crop)[0, 0, 0].tolist() == [255, 128, 255]


def test_to_rgb_rejects_other_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"shape \(1, 2, 6, 6\); expected \(N, 3, S, S\)"):
        to_rgb(np.zeros((1, 2, 6, 6), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        to_rgb(np.zeros((1, 3, 6, 6), dtype=np.int32))


@pytest.fixture
def crops() -> np.ndarray:
    """Five 4x4 crops, crop i filled with DAPI = 10 * (i + 1)."""
    images = np.zeros((5, 3, 4, 4), dtype=np.uint8)
    images[:, 0] = (10 * np.arange(1, 6))[:, None, None]
    return images


def test_gallery_layout(crops):
    nearest = np.array([[3, 0, 4], [1, -1, -1]])
    gallery = centroid_gallery(crops, nearest, pad=2, pad_value=255)
    assert gallery.shape == (2 * 4 + 3 * 2, 3 * 4 + 4 * 2, 3)
    for row in range(2):
        for col in range(3):
            tile = gallery[2 + row * 6 : 6 + row * 6, 2 + col * 6 : 6 + col * 6]
            index = nearest[row, col]
            expected = to_rgb(crops[index : index + 1])[0] if index >= 0 else 0
            np.testing.assert_array_equal(tile, np.broadcast_to(expected, tile.shape))
    assert (gallery[:2] == 255).all()  # top padding
    assert (gallery[:, 6:8] == 255).all()  # gap between the first two columns


class FakeCropSet:
    """Reads only the requested rows, like CropSet.images(indices)."""

    def __init__(self, images: np.ndarray) -> None:
        self._images = images
        self.size = images.shape[-1]
        self.requested: list[list[int]] = []

    def __len__(self) -> int:
        return len(self._images)

    def images(self, indices) -> np.ndarray:
        self.requested.append(list(indices))
        return self._images[indices]


def test_gallery_from_a_cropset_reads_only_the_needed_crops(crops):
    cropset = FakeCropSet(crops)
    nearest = np.array([[4, 2], [2, -1]])
    gallery = centroid_gallery(cropset, nearest, pad=0)
    assert cropset.requested == [[2, 4]]
    np.testing.assert_array_equal(gallery, centroid_gallery(crops, nearest, pad=0))
    assert (gallery[4:, 4:] == 0).all()  # the -1 slot is black


def test_gallery_of_empty_slots_only(crops):
    gallery = centroid_gallery(FakeCropSet(crops), np.full((2, 2), -1), pad=1)
    assert gallery.shape == (11, 11, 3)


def test_gallery_errors(crops):
    with pytest.raises(ValueError, match="row 7, but there are 5 crops"):
        centroid_gallery(crops, np.array([[7]]))
    with pytest.raises(ValueError, match=r"expected integer indices \(K, n\)"):
        centroid_gallery(crops, np.array([1, 2]))
    with pytest.raises(ValueError, match="below -1"):
        centroid_gallery(crops, np.array([[-2]]))


def test_save_png_round_trip(tmp_path, crops):
    gallery = centroid_gallery(crops, np.array([[0, 1], [2, 3]]))
    path = save_png(tmp_path / "gallery.png", gallery)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), gallery)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8"):
        save_png(tmp_path / "bad.png", gallery[..., 0])
