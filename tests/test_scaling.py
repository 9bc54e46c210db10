import math

import pytest
import torch

from phenossl._scaling import InputScaler, per_channel

CPU = torch.device("cpu")


def test_per_channel_repeats_one_value_and_checks_the_count():
    assert per_channel(0.5, 3) == (0.5, 0.5, 0.5)
    assert per_channel(torch.tensor([0.1, 0.2]), 2) == pytest.approx((0.1, 0.2))
    with pytest.raises(ValueError, match="mean has 2 values but the images have 3 channels"):
        per_channel([0.1, 0.2], 3, "mean")
    with pytest.raises(ValueError, match="finite"):
        per_channel([math.nan], 1, "std")
    with pytest.raises(ValueError, match="must be > 0"):
        per_channel([0.0, 1.0], 2, "std", positive=True)


def test_input_scaler_scales_uint8_and_float_alike():
    scaler = InputScaler([0.1, 0.2], [0.5, 0.25], CPU)
    images = torch.randint(0, 256, (2, 2, 5, 5), dtype=torch.uint8)
    mean = torch.tensor([0.1, 0.2]).view(1, 2, 1, 1)
    std = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    expected = (images.float() / 255 - mean) / std
    torch.testing.assert_close(scaler(images), expected)
    torch.testing.assert_close(scaler(images.float() / 255), expected)
    out = torch.empty(2, 2, 5, 5)
    assert scaler(images, out=out).data_ptr() == out.data_ptr()


def test_input_scaler_resizes_after_scaling():
    scaler = InputScaler([0.5], [0.5], CPU, input_size=3, memory_format=torch.channels_last)
    x = scaler(torch.full((1, 1, 6, 6), 255, dtype=torch.uint8))
    assert x.shape == (1, 1, 3, 3)
    torch.testing.assert_close(x, torch.ones(1, 1, 3, 3))
