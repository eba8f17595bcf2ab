"""Metrics on small known inputs."""

import numpy as np
import pytest
import torch
from monai.networks.nets import AutoencoderKL
from scripts.data.demo_phantom import make_patient
from scripts.errors import Gem3dInputError
from scripts.metrics.features import EncoderFeatures, radimagenet_resnet50
from scripts.metrics.fid import features_per_plane, fid_per_plane
from scripts.metrics.fidelity import nearest_training_similarity, pairwise_ms_ssim, slice_fidelity


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    ae = AutoencoderKL(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=[8, 8, 8],
        latent_channels=4,
        num_res_blocks=1,
        norm_num_groups=4,
        attention_levels=[False] * 3,
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    )
    return EncoderFeatures(ae)


def test_fid_zero_for_identical_sets_and_larger_for_shifted(extractor):
    vols = [make_patient((32, 32, 32), seed=s)["image"] for s in range(4)]
    real = features_per_plane(vols, extractor, 32)
    same = fid_per_plane(real, features_per_plane(vols, extractor, 32))
    assert all(abs(v) < 1e-3 for v in same.values()), same
    other = features_per_plane([make_patient((32, 32, 32), seed=s)["image"] for s in range(4, 8)], extractor, 32)
    rng = np.random.default_rng(0)  # another distribution: inverted contrast and heavy noise
    shifted = features_per_plane(
        [np.clip(1 - v + rng.normal(0, 0.2, v.shape), 0, 1) * (v > 0) for v in vols], extractor, 32
    )
    near, far = fid_per_plane(real, other), fid_per_plane(real, shifted)
    assert all(far[k] > near[k] > 0 for k in far), (near, far)


def test_fidelity_identity_and_degradation():
    p = make_patient((32, 32, 32), seed=1)
    same = slice_fidelity(p["image"], p["image"], p["label"])
    assert same["ms_ssim"] == pytest.approx(1.0, abs=1e-4) and same["ssim"] == pytest.approx(1.0, abs=1e-4)
    noisy = np.clip(p["image"] + np.random.default_rng(0).normal(0, 0.1, p["image"].shape), 0, 1)
    worse = slice_fidelity(noisy.astype(np.float32), p["image"], p["label"])
    assert worse["ms_ssim"] < 0.99 and worse["psnr"] < 25 and worse["ssim"] < same["ssim"]


def test_diversity_and_privacy():
    vols = [make_patient((32, 32, 32), seed=s)["image"] for s in range(3)]
    assert pairwise_ms_ssim([vols[0], vols[0]]) == pytest.approx(1.0, abs=1e-4)
    assert pairwise_ms_ssim(vols) < 0.99
    near = nearest_training_similarity(vols[1], vols)
    assert near["nearest_training_index"] == 1 and near["nearest_training_corr"] == pytest.approx(1.0)


def test_radimagenet_loader_fails_clearly_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(Gem3dInputError, match="internet access"):
        radimagenet_resnet50()


def test_segmentation_scores_per_region_in_mm():
    from scripts.data.label_set import BRATS
    from scripts.metrics.segmentation import mean_scores, region_scores

    regions = BRATS.regions

    truth = np.zeros((24, 24, 24), np.int16)
    truth[4:20, 4:20, 4:20] = 1
    truth[8:14, 8:14, 8:14] = 2  # edema
    truth[10:12, 10:12, 10:12] = 4  # enhancing
    same = region_scores(truth, truth, regions, (1.0, 1.0, 1.0))
    assert same["whole_tumour"] == {"dice": 1.0, "hd95": 0.0} and same["enhancing"]["dice"] == 1.0
    assert same["tumour_core"] == {"dice": pytest.approx(1.0), "hd95": 0.0}  # core = core + enhancing
    moved = np.roll(truth, 2, axis=0)
    mm1, mm2 = region_scores(moved, truth, regions, (1, 1, 1)), region_scores(moved, truth, regions, (2, 1, 1))
    assert 0 < mm1["whole_tumour"]["dice"] < 1 and mm1["whole_tumour"]["hd95"] == pytest.approx(2.0)
    assert mm2["whole_tumour"]["hd95"] == pytest.approx(4.0)  # HD95 is in millimetres
    missed = region_scores(np.where(truth == 4, 1, truth), truth, regions)
    assert missed["enhancing"]["dice"] == 0.0 and np.isnan(missed["enhancing"]["hd95"])
    mean = mean_scores([{"id": "a", **same}, {"id": "b", **missed}])
    assert mean["enhancing"]["dice"] == pytest.approx(0.5) and mean["enhancing"]["hd95_undefined"] == 1
