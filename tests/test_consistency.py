"""The through-plane consistency measures on known inputs, and the correlated starting noise."""

import numpy as np
import pytest
import torch
from scripts.data.demo_phantom import make_patient
from scripts.metrics.consistency import adjacent_slice_ssim, consistency, gradient_anisotropy, relative_to
from scripts.sampling.sampler import correlated_noise


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
