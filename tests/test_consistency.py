"""The through-plane consistency measures on known inputs, the correlated starting noise and the scanner noise."""

import numpy as np
import pytest
import torch
from scripts.data.demo_phantom import make_patient
from scripts.errors import Gem3dInputError
from scripts.metrics.consistency import adjacent_slice_ssim, consistency, gradient_anisotropy, relative_to
from scripts.sampling.sampler import correlated_noise
from scripts.sampling.scanner_noise import (
    add_scanner_noise,
    check_kind,
    check_setting,
    estimate_noise_sigma,
    noise_level,
)


@pytest.fixture(scope="module")
def real():
    p = make_patient((48, 48, 48), seed=5)
    return p["image"], p["label"]


def test_a_real_volume_scores_one_times_real(real):
    image, label = real
    ref = consistency([image], [label])
    rel = relative_to(ref, consistency([image], [label]))
    assert rel["grad_anisotropy_x_real"] == pytest.approx(1.0) and rel["adjacent_ssim_minus_real"] == 0.0


def test_shuffled_or_independently_renoised_slices_score_far_from_real(real):
    image, label = real
    ref = consistency([image], [label])
    shuffled = image[:, :, np.random.default_rng(0).permutation(image.shape[2])]
    renoised = image + np.random.default_rng(1).normal(0, 0.08, image.shape[2]).astype(np.float32)[None, None, :]
    for fake in (shuffled, renoised):
        rel = relative_to(ref, consistency([fake], [label]))
        assert rel["grad_anisotropy_x_real"] > 1.3 and rel["adjacent_ssim_minus_real"] < -0.03
    # smoothing along z only (no flicker at all) moves the measures the other way
    smooth = np.cumsum(image, axis=2) / np.arange(1, image.shape[2] + 1)
    assert gradient_anisotropy(smooth, label) < gradient_anisotropy(image, label)


def test_measures_ignore_background_and_empty_volumes():
    vol = np.zeros((16, 16, 16), np.float32)
    assert np.isnan(adjacent_slice_ssim(vol))
    vol[4:12, 4:12, 4:12] = np.linspace(0.2, 0.9, 8)[None, None, :]  # a ramp along z, flat in-plane
    assert gradient_anisotropy(vol) > 10


def test_correlated_noise_is_standard_normal_with_ar1_correlation():
    g = torch.Generator().manual_seed(0)
    noise = correlated_noise((40, 4, 32, 32), 0.85, g)
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1.0) < 0.05
    flat = noise.flatten(1)
    lag1 = torch.stack([torch.corrcoef(flat[z : z + 2])[0, 1] for z in range(39)]).mean().item()
    lag3 = torch.stack([torch.corrcoef(flat[[z, z + 3]])[0, 1] for z in range(37)]).mean().item()
    assert lag1 == pytest.approx(0.85, abs=0.03) and lag3 == pytest.approx(0.85**3, abs=0.04)
    with pytest.raises(ValueError, match="noise correlation"):
        correlated_noise((2, 1), 1.0, g)


def _disc_phantom(size=96):
    """Piecewise-smooth anatomy with sharp edges: a bright disc on a ramp, inside a skull-stripped field of view."""
    y, x = np.mgrid[:size, :size] / size
    image = 0.4 + 0.3 * x + 0.4 * (((x - 0.5) ** 2 + (y - 0.45) ** 2) < 0.04)
    return np.where(((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.2, image, 0.0)


@pytest.mark.parametrize("sigma", [0.01, 0.03])
def test_scanner_noise_level_is_measured_and_reproduced(sigma):
    clean = _disc_phantom()
    rng = np.random.default_rng(0)
    fg = clean > 0
    assert estimate_noise_sigma(clean, fg) < 0.1 * sigma  # edges and ramps alone are not noise
    noisy = np.where(fg, add_scanner_noise(clean, sigma, rng), 0.0)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)
    # a stack pools its slices; Gaussian noise for CT
    stack = np.stack([noisy, np.where(fg, add_scanner_noise(clean, sigma, rng, "gaussian"), 0.0)], axis=2)
    assert estimate_noise_sigma(stack) == pytest.approx(sigma, rel=0.15)
    assert estimate_noise_sigma(np.zeros((8, 8))) == 0.0


def test_scanner_noise_kinds_keep_or_bias_the_mean():
    """Rician noise (a magnitude) raises the mean of dark tissue; Gaussian noise, the default, keeps it; any other
    kind is refused."""
    rng = np.random.default_rng(0)
    dark, sigma = np.full((128, 128), 0.05, np.float32), 0.04
    rician = add_scanner_noise(dark, sigma, rng, "rician")
    gaussian = add_scanner_noise(dark, sigma, rng, "gaussian")
    assert rician.mean() - 0.05 > 0.01 and (rician >= 0).all()
    assert abs(gaussian.mean() - 0.05) < 0.002 and gaussian.std() == pytest.approx(sigma, rel=0.05)
    default, named = (add_scanner_noise(dark, sigma, np.random.default_rng(1), *k) for k in ((), ("gaussian",)))
    np.testing.assert_array_equal(default, named)
    for bad in ("pink", "modality", None):
        with pytest.raises(Gem3dInputError, match="scanner_noise_kind"):
            check_kind(bad)
        with pytest.raises(Gem3dInputError, match="scanner_noise_kind"):
            add_scanner_noise(dark, sigma, rng, bad)


def test_scanner_noise_settings_and_their_levels():
    assert noise_level("none", 0.02, 0.01) == (0.0, "none")
    assert noise_level("informed", 0.02, 0.01) == (0.02, "informed slice")
    assert noise_level("informed", None, 0.01)[0] == 0.01
    assert noise_level("0.03", 0.02, 0.01) == (0.03, "given")
    # "auto": a share of the informed scan's level, none where that scan is the volume's own (mode "true")
    level, source = noise_level("auto", 0.02, 0.01, "ic", 0.7)
    assert level == pytest.approx(0.014) and source == "0.7 x informed slice"
    assert noise_level("auto", None, 0.01, "ig", 0.7)[0] == pytest.approx(0.007)
    assert noise_level("auto", 0.02, 0.01, "true", 0.7)[0] == 0.0
    assert noise_level("informed", 0.02, 0.01, "true", 0.5)[0] == pytest.approx(0.01)
    assert noise_level("0.03", 0.02, 0.01, "ic", 0.5)[0] == 0.03  # a given level is not scaled
    for bad in ("loud", -0.1, float("nan"), 2.0):
        with pytest.raises(Gem3dInputError, match="scanner_noise"):
            check_setting(bad)
    for bad in (-0.1, "half", float("inf"), 3):
        with pytest.raises(Gem3dInputError, match="scanner_noise_fraction"):
            noise_level("auto", 0.02, 0.01, "ic", bad)
