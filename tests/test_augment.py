"""Augmentation compositions: contracts, per-sample randomness, identities, geometry, colour."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from phenossl.augment import COMPOSITIONS, build_augmentation, describe, make_views
from phenossl.augment.geometry import ResizedCrop
from phenossl.augment.intensity import (
    ColorJitter,
    Erase,
    Grayscale,
    Invert,
    Solarize,
    _apply_in_random_order,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)

NAMES = sorted(COMPOSITIONS)


def _batch(name: str, n: int = 6, seed: int = 0) -> torch.Tensor:
    """A random batch shaped like the composition's data (cells at 48 px to keep tests fast)."""
    g = torch.Generator().manual_seed(seed)
    if name.startswith("mnist"):
        return torch.rand(n, 1, 28, 28, generator=g)
    side = 32 if name in ("cifar", "identity") else 48
    return torch.rand(n, 3, side, side, generator=g)


def _expected_side(name: str, x: torch.Tensor) -> int:
    return describe(name)["size"] or x.shape[-1]


# --- the module contract ------------------------------------------------------------------------


def test_registry_has_the_paper_compositions() -> None:
    assert set(NAMES) == {
        "cifar",
        "mnist_digit",
        "mnist_handwriting",
        "cell_affine_crop",
        "cell_affine_rot360",
        "cell_fig6_left",
        "cell_fig6_right",
        "fluorescence",
        "identity",
    }


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_device(name: str) -> None:
    x = _batch(name)
    torch.manual_seed(0)
    y = build_augmentation(name)(x)
    side = _expected_side(name, x)
    assert y.shape == (x.shape[0], x.shape[1], side, side)
    assert y.dtype == x.dtype
    assert y.device == x.device
    assert y.min() >= 0.0
    assert y.max() <= 1.0
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_preserved(dtype: torch.dtype) -> None:
    x = _batch("cell_fig6_left").to(dtype)
    y = build_augmentation("cell_fig6_left")(x)
    assert y.dtype == dtype
    assert y.float().min() >= 0.0
    assert y.float().max() <= 1.0


def test_cells_default_to_the_input_size_and_honour_size() -> None:
    x = torch.rand(2, 3, 196, 196)
    assert build_augmentation("cell_affine_crop")(x).shape == (2, 3, 196, 196)
    assert build_augmentation("cell_affine_crop", size=64)(x).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "identity"])
def test_every_sample_gets_its_own_parameters(name: str) -> None:
    x = _batch(name, n=1).expand(8, -1, -1, -1).contiguous()
    torch.manual_seed(1)
    y = build_augmentation(name)(x).flatten(1)
    distances = torch.cdist(y, y)
    off_diagonal = distances[~torch.eye(len(y), dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3, "two copies of one image got identical views"


@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_reproduce(name: str) -> None:
    x = _batch(name)
    aug = build_augmentation(name)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    b = aug(x)
    torch.manual_seed(6)
    c = aug(x)
    assert torch.equal(a, b)
    if name != "identity":
        assert not torch.equal(a, c)


def test_identity_returns_the_batch_and_resizes_on_request() -> None:
    x = torch.rand(3, 3, 40, 40)
    assert build_augmentation("identity")(x) is x
    y = build_augmentation("identity", size=20)(x)
    torch.testing.assert_close(y, torch.nn.functional.avg_pool2d(x, 2))  # 2x bilinear = box mean


# --- probabilities of zero are exact identities --------------------------------------------------

IDENTITY_PARAMS = {
    "cifar": {
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
        "jitter_p": 0,
        "hue_p": 0,
        "gray_p": 0,
        "solarize_p": 0,
        "flip_p": 0,
    },
    "mnist_digit": {
        "pad": (0, 0),
        "invert_p": 0,
        "degrees": 0,
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
    },
    "mnist_handwriting": {
        "hflip_p": 0,
        "vflip_p": 0,
        "degrees": 0,
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
        "erase_p": 0,
    },
    "cell_affine_crop": {
        "jitter_p": 0,
        "affine_degrees": 0,
        "affine_translate": 0,
        "affine_shear": 0,
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
    },
    "cell_affine_rot360": {
        "jitter_p": 0,
        "affine_degrees": 0,
        "affine_translate": 0,
        "affine_shear": 0,
        "degrees": 0,
    },
    "cell_fig6_left": {
        "jitter_p": 0,
        "hflip_p": 0,
        "vflip_p": 0,
        "degrees": 0,
        "affine_degrees": 0,
        "affine_translate": 0,
        "affine_shear": 0,
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
    },
    "cell_fig6_right": {
        "jitter_p": 0,
        "hflip_p": 0,
        "vflip_p": 0,
        "degrees": 0,
        "center_crop_scale": 1,
    },
    "fluorescence": {
        "rot90_p": 0,
        "hflip_p": 0,
        "affine_degrees": 0,
        "affine_translate": 0,
        "affine_shear": 0,
        "crop_scale": (1, 1),
        "crop_ratio": (1, 1),
        "jitter_p": 0,
        "blur_p": 0,
        "noise_p": 0,
    },
}


@pytest.mark.parametrize("name", sorted(IDENTITY_PARAMS))
def test_all_probabilities_zero_is_exactly_the_identity(name: str) -> None:
    x = _batch(name)
    size = x.shape[-1] if describe(name)["size"] else None
    aug = build_augmentation(name, size=size, **IDENTITY_PARAMS[name])
    assert torch.equal(aug(x), x)


@pytest.mark.parametrize(
    "step",
    [
        ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.5),
        Grayscale(0.5),
        Solarize(0.5),
        Invert(0.5),
        Erase(0.5, (0.1, 0.3)),
    ],
    ids=lambda s: type(s).__name__,
)
def test_samples_outside_the_gate_come_back_exactly(step) -> None:
    x = _colour_images(64)
    torch.manual_seed(0)
    y = step(x)
    same = (y == x).flatten(1).all(dim=1)
    assert 16 < same.sum() < 48  # about half untouched, bit for bit; the others changed


# --- geometry ------------------------------------------------------------------------------------


def test_flip_with_p_one_mirrors_exactly_and_twice_is_the_identity() -> None:
    x = _batch("mnist_handwriting")
    off = IDENTITY_PARAMS["mnist_handwriting"]
    hflip = build_augmentation("mnist_handwriting", size=28, **{**off, "hflip_p": 1.0})
    vflip = build_augmentation("mnist_handwriting", size=28, **{**off, "vflip_p": 1.0})
    torch.testing.assert_close(hflip(x), x.flip(-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(vflip(x), x.flip(-2), rtol=0, atol=1e-5)
    torch.testing.assert_close(hflip(hflip(x)), x, rtol=0, atol=1e-5)


def _centre_of_mass(y: torch.Tensor) -> torch.Tensor:
    """(B, 2) x/y centre of mass in pixels of the first channel."""
    yy, xx = torch.meshgrid(
        torch.arange(y.shape[-2]) + 0.5, torch.arange(y.shape[-1]) + 0.5, indexing="ij"
    )
    mass = y[:, 0].sum(dim=(1, 2))
    return (
        torch.stack([(y[:, 0] * xx).sum(dim=(1, 2)), (y[:, 0] * yy).sum(dim=(1, 2))], 1)
        / mass[:, None]
    )


def test_rotations_turn_about_the_centre_and_keep_the_mass() -> None:
    side = 64
    yy, xx = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    disc = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2).float()
    x = disc.expand(16, 3, side, side)
    aug = build_augmentation("cell_affine_rot360", jitter_p=0, affine_translate=0, affine_shear=0)
    torch.manual_seed(0)
    y = aug(x)
    torch.testing.assert_close(_centre_of_mass(y), torch.full((16, 2), 32.0), atol=0.05, rtol=0)
    torch.testing.assert_close(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.01, atol=0)
    # an off-centre blob moves on the circle through it around the centre, by varying angles
    blob = torch.zeros(16, 1, side, side)
    blob[:, :, 30:34, 46:50] = 1.0  # centred at (48, 32): 16 px right of the image centre
    rotate = build_augmentation(
        "mnist_handwriting", size=side, **{**IDENTITY_PARAMS["mnist_handwriting"], "degrees": 180}
    )
    torch.manual_seed(0)
    moved = _centre_of_mass(rotate(blob)) - 32.0
    torch.testing.assert_close(moved.norm(dim=1), torch.full((16,), 16.0), atol=0.3, rtol=0)
    angles = torch.atan2(moved[:, 1], moved[:, 0])
    assert angles.std() > 1.0  # spread over the circle, not one fixed angle


def test_crop_scale_above_one_zooms_out_with_a_background_border() -> None:
    x = torch.ones(32, 1, 32, 32)
    off = IDENTITY_PARAMS["mnist_handwriting"]
    aug = build_augmentation(
        "mnist_handwriting", size=32, **{**off, "crop_scale": (1.21, 1.21), "crop_ratio": (1, 1)}
    )
    torch.manual_seed(0)
    y = aug(x)[:, 0]
    content = (y > 0.5).float()
    # the image now covers 1/1.21 of the area (side 32 / 1.1 = 29.1 px), the rest is background
    torch.testing.assert_close(
        content.mean(dim=(1, 2)), torch.full((32,), 1 / 1.21), atol=0.03, rtol=0
    )
    rows, cols = content.amax(dim=2), content.amax(dim=1)
    assert torch.all((rows.sum(1) - 29.1).abs() <= 1)
    assert torch.all((cols.sum(1) - 29.1).abs() <= 1)
    # at a random place: the image is not always centred
    first_col = cols.argmax(dim=1)
    assert first_col.unique().numel() > 1
    # every output has background somewhere on its border
    border = torch.cat([y[:, 0], y[:, -1], y[:, :, 0], y[:, :, -1]], dim=1)
    assert (border.amin(dim=1) == 0).all()


def test_crops_inside_the_image_never_bring_in_background() -> None:
    x = torch.ones(64, 3, 32, 32)
    torch.manual_seed(0)
    y = build_augmentation("cifar", jitter_p=0, hue_p=0, gray_p=0)(x)
    # edge pixels are not darkened by zeros leaking in through (bicubic) interpolation
    torch.testing.assert_close(y, torch.ones_like(y), atol=1e-5, rtol=0)


def test_padding_shrinks_the_digit_by_the_drawn_fraction() -> None:
    x = torch.ones(200, 1, 28, 28)
    aug = build_augmentation(
        "mnist_digit", size=28, invert_p=0, degrees=0, crop_scale=(1, 1), crop_ratio=(1, 1)
    )
    torch.manual_seed(0)
    covered = (aug(x) > 0.5).float().mean(dim=(1, 2, 3))
    # the side shrinks by 1 + 2f with f in [0.1, 0.4] (give or take a pixel per side)
    assert covered.min() >= ((28 / 1.8 - 1) / 28) ** 2
    assert covered.max() <= ((28 / 1.2 + 1) / 28) ** 2
    assert covered.max() - covered.min() > 0.25


def _boxes(step: ResizedCrop, n: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = torch.full((n, 2), float(side))
    m, _ = step.sample(size, (side, side))
    wh = side / torch.stack([m[:, 0, 0], m[:, 1, 1]], dim=1)
    centre = -m[:, :2, 2] / torch.stack([m[:, 0, 0], m[:, 1, 1]], dim=1)
    return wh, centre


def test_resized_crop_boxes_follow_torchvision_within_the_image() -> None:
    torch.manual_seed(0)
    wh, centre = _boxes(ResizedCrop((0.08, 1.0), (3 / 4, 4 / 3)), 4000, 32)
    area = wh.prod(1) / 32**2
    assert area.min() >= 0.08 - 1e-6
    assert area.max() <= 1 + 1e-5
    assert ((centre.abs() + wh / 2) <= 16 + 1e-4).all()  # inside the canvas
    ratio = wh[:, 0] / wh[:, 1]
    assert ratio.min() >= 3 / 4 - 1e-5
    assert ratio.max() <= 4 / 3 + 1e-5
    # the accepted areas are spread over the range (not stuck at the fallback)
    assert area.std() > 0.2


def test_resized_crop_boxes_zooming_out_contain_the_image() -> None:
    torch.manual_seed(0)
    wh, centre = _boxes(ResizedCrop((1.05, 1.3), (1.0, 1.0)), 2000, 32)
    assert (wh >= 32).all()
    assert ((centre.abs() - (wh / 2 - 16)) <= 1e-4).all()  # the image stays inside the box
    assert centre.abs().max() > 1.0


def test_random_erasing_erases_a_rectangle_of_the_requested_area() -> None:
    x = torch.ones(200, 1, 32, 32)
    off = IDENTITY_PARAMS["mnist_handwriting"]
    aug = build_augmentation("mnist_handwriting", size=32, **{**off, "erase_p": 1.0})
    torch.manual_seed(0)
    erased = (aug(x) == 0).float().mean(dim=(1, 2, 3))
    hit = erased > 0
    assert hit.float().mean() > 0.9  # torchvision's 10 attempts rarely all fail
    assert erased[hit].min() >= 0.02 * 0.7
    assert erased[hit].max() <= 0.3 * 1.3


# --- colour --------------------------------------------------------------------------------------


def _colour_images(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 12, 12, generator=g)
    x[:, :, :4] = torch.randint(0, 3, (n, 3, 4, 12), generator=g) / 2  # ties and grays
    return x


@pytest.mark.parametrize(
    ("ours", "theirs", "factors"),
    [
        (adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (adjust_hue, TF.adjust_hue, [-0.5, -0.125, 0.0, 0.1, 0.37, 0.5]),
    ],
)
def test_colour_ops_match_torchvision_per_sample(ours, theirs, factors) -> None:
    x = _colour_images(len(factors))
    y = ours(x, torch.tensor(factors))
    for i, f in enumerate(factors):
        torch.testing.assert_close(y[i], theirs(x[i], f), atol=2e-6, rtol=0)


@pytest.mark.parametrize("op", [adjust_contrast, adjust_saturation, adjust_hue])
def test_colour_ops_on_one_channel_match_torchvision(op) -> None:
    x = torch.rand(2, 1, 8, 8)
    theirs = {adjust_contrast: TF.adjust_contrast, adjust_saturation: TF.adjust_saturation}
    y = op(x, torch.tensor([0.3, 0.3]))
    expected = theirs[op](x, 0.3) if op in theirs else x  # torchvision's hue: gray is unchanged
    torch.testing.assert_close(y, expected)


def test_jitter_order_is_drawn_per_sample() -> None:
    x = _colour_images(64)
    b = torch.full((64,), 1.5)
    c = torch.full((64,), 0.3)
    y = _apply_in_random_order(x, [(adjust_brightness, b), (adjust_contrast, c)])
    b_then_c = adjust_contrast(adjust_brightness(x, b), c)
    c_then_b = adjust_brightness(adjust_contrast(x, c), b)
    first = (y - b_then_c).flatten(1).abs().amax(1) < 1e-6
    second = (y - c_then_b).flatten(1).abs().amax(1) < 1e-6
    assert (first | second).all()  # each sample ran each op exactly once, in one of the orders
    assert first.sum() > 10
    assert second.sum() > 10


def test_colour_jitter_on_gray_images_changes_brightness_and_contrast_only() -> None:
    x = torch.rand(16, 1, 32, 32)
    torch.manual_seed(0)
    y = ColorJitter(0.4, 0.4, 0.4, 0.5)(x)
    assert y.shape == x.shape
    assert not torch.equal(y, x)
    torch.manual_seed(0)
    z = build_augmentation("cifar")(x)  # grayscale, saturation and hue skip the one channel
    assert z.shape == (16, 1, 32, 32)


def test_grayscale_and_solarize_with_p_one() -> None:
    x = _colour_images()
    off = IDENTITY_PARAMS["cifar"]
    gray = build_augmentation("cifar", size=None, **{**off, "gray_p": 1.0})(x)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x, num_output_channels=3))
    sol = build_augmentation("cifar", size=None, **{**off, "solarize_p": 1.0})(x)
    torch.testing.assert_close(sol, TF.solarize(x, 0.5))


def test_inversion_with_p_one_inverts_the_background_too() -> None:
    x = torch.zeros(4, 1, 28, 28)
    aug = build_augmentation("mnist_digit", invert_p=1.0)
    assert torch.equal(aug(x), torch.ones(4, 1, 32, 32))


def test_colour_steps_reject_other_channel_counts() -> None:
    with pytest.raises(ValueError, match="2 channels"):
        build_augmentation("cifar")(torch.rand(2, 2, 32, 32))


# --- views ---------------------------------------------------------------------------------------


def test_make_views_single_and_mixed() -> None:
    x = _batch("cell_fig6_left", n=4)
    left = build_augmentation("cell_fig6_left")
    right = build_augmentation("cell_fig6_right")
    views = make_views(left, x)
    assert len(views) == 2
    assert not torch.equal(views[0], views[1])
    torch.manual_seed(0)
    mixed = make_views([left, right, left, right], x, n_views=4)
    torch.manual_seed(0)
    expected = [left(x), right(x), left(x), right(x)]
    assert all(torch.equal(a, b) for a, b in zip(mixed, expected))
    with pytest.raises(ValueError, match="multiple"):
        make_views([left, right], x, n_views=3)
    with pytest.raises(ValueError, match="empty"):
        make_views([], x)


# --- bad input -----------------------------------------------------------------------------------


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"unknown augmentation .simclr.*cifar.*identity"):
        build_augmentation("simclr")
    with pytest.raises(ValueError, match="unknown augmentation"):
        describe("nope")


def test_unknown_parameter_is_named_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"hue_prob.*'cifar'.*valid parameters: size, crop_scale"):
        build_augmentation("cifar", hue_prob=0.5)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("cifar", {"flip_p": 1.5}, "flip_p=1.5"),
        ("cifar", {"hue": 0.7}, r"hue=0.7.*\[0, 0.5\]"),
        ("cifar", {"crop_scale": (0.9, 0.2)}, "crop_scale"),
        ("cifar", {"crop_scale": 0.5}, "crop_scale=0.5: expected a pair"),
        ("cifar", {"size": 0}, "size=0"),
        ("cifar", {"interpolation": "lanczos"}, "interpolation='lanczos'"),
        ("mnist_digit", {"degrees": -5}, "degrees=-5"),
        ("mnist_handwriting", {"erase_scale": (0.0, 0.3)}, "erase_scale"),
        ("cell_affine_crop", {"affine_shear": 90}, "affine_shear=90"),
        ("cell_fig6_right", {"center_crop_scale": 0}, "center_crop_scale=0"),
        ("cell_fig6_left", {"brightness": "0.4"}, "brightness='0.4': expected a number"),
        ("cifar", {"brightness": float("nan")}, "brightness=nan: expected a number >= 0"),
    ],
)
def test_bad_values_name_the_parameter(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_augmentation(name, **params)


def test_bad_batches_are_rejected_with_a_hint() -> None:
    aug = build_augmentation("cifar")
    with pytest.raises(ValueError, match=r"float \(B, C, H, W\).*x.float\(\) / 255"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        aug(torch.rand(3, 32, 32))


def test_describe_gives_the_defaults_and_params_are_recorded() -> None:
    d = describe("cifar")
    assert d["flip_p"] == 0.5
    assert d["hue"] == 0.1
    assert d["crop_scale"] == (0.08, 1.0)
    assert describe("cell_fig6_right")["center_crop_scale"] == 0.5
    assert describe("mnist_digit")["degrees"] == 25.0
    aug = build_augmentation("cifar", crop_scale=[0.2, 1], hue_p=0.25)
    assert aug.params == {**d, "crop_scale": (0.2, 1.0), "hue_p": 0.25}
    for name in NAMES:  # every composition builds from its own description
        assert build_augmentation(name, **describe(name)).params == describe(name)


# --- accelerator ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_batches_stay_on_the_device_without_host_syncs(name: str) -> None:
    x = _batch(name).cuda()
    aug = build_augmentation(name)
    aug(x)  # warm-up (first calls allocate pinned memory, load kernels)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = aug(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.device == x.device
    assert y.dtype == x.dtype
    assert y.shape[-1] == _expected_side(name, x)
    assert math.isfinite(y.sum().item())


# --- the fluorescence composition ---------------------------------------------------------------


def test_fluorescence_never_moves_signal_between_channels() -> None:
    """A DAPI-only image stays DAPI-only; the paper's hue jitter leaks it into other channels."""
    x = torch.zeros(16, 3, 48, 48)
    x[:, 0, 14:34, 14:34] = 0.8
    torch.manual_seed(0)
    y = build_augmentation("fluorescence", noise_p=0.0, jitter_p=1.0, blur_p=1.0)(x)
    assert y[:, 1:].abs().max() == 0
    assert y[:, 0].amax(dim=(1, 2)).min() > 0.3
    torch.manual_seed(0)
    paper = build_augmentation("cell_fig6_left")(x)
    assert paper[:, 1:].amax() > 0.1


def test_fluorescence_jitters_each_channel_on_its_own() -> None:
    x = torch.rand(1, 1, 48, 48).expand(8, 3, -1, -1).contiguous()
    torch.manual_seed(0)
    aug = build_augmentation(
        "fluorescence",
        **{**IDENTITY_PARAMS["fluorescence"], "jitter_p": 1.0},
    )
    y = aug(x)
    gaps = (y[:, 0] - y[:, 1]).abs().amax(dim=(1, 2))
    assert gaps.min() > 1e-2, "two identical channels got the same intensity change"


def test_fluorescence_rotations_are_exact_symmetries_of_the_square() -> None:
    x = torch.rand(32, 3, 20, 20)
    params = {**IDENTITY_PARAMS["fluorescence"], "rot90_p": 1.0, "hflip_p": 0.5}
    torch.manual_seed(0)
    y = build_augmentation("fluorescence", **params)(x)
    seen = set()
    for xi, yi in zip(x, y):
        matches = [
            (k, f)
            for k in range(4)
            for f in (False, True)
            if torch.allclose(yi, torch.rot90(xi.flip(-1) if f else xi, k, (1, 2)), atol=1e-5)
        ]
        assert matches, "a view is not one of the eight symmetries of its image"
        seen.update(matches)
    assert len(seen) >= 6


def test_fluorescence_noise_and_blur_are_mild() -> None:
    x = torch.full((8, 3, 48, 48), 0.5)
    torch.manual_seed(0)
    noisy = build_augmentation(
        "fluorescence", **{**IDENTITY_PARAMS["fluorescence"], "noise_p": 1.0}
    )(x)
    assert 0 < float((noisy - x).std()) < 0.03
    edge = torch.zeros(4, 3, 48, 48)
    edge[..., 24:] = 1.0
    blurred = build_augmentation(
        "fluorescence", **{**IDENTITY_PARAMS["fluorescence"], "blur_p": 1.0}
    )(edge)
    assert torch.allclose(blurred.sum(), edge.sum(), rtol=1e-4)  # mass kept (replicated edges)
    assert blurred[..., 20].max() < 0.01 and blurred[..., 23].min() > 0.0
