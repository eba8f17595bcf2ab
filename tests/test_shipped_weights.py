"""The weights in bundle/models load into the networks inference.json declares, and synthesize a demo volume."""

import os

import numpy as np
import torch
from conftest import BUNDLE
from tiny_model import parser_with

MODELS = os.path.join(BUNDLE, "models")
FILES = [
    "autoencoder.pt",
    "window.pt",
    "volume.pt",
    "informed.pt",
    "segmenter.pt",
    "volume_mask_only.pt",
    "latent_scale.json",
]


def test_shipped_files_exist_and_are_small():
    for name in FILES:
        path = os.path.join(MODELS, name)
        assert os.path.isfile(path), f"shipped weight file missing: {path}"
        assert os.path.getsize(path) < 25 * 1024 * 1024


def test_shipped_weights_load_into_declared_networks():
    parser = parser_with({})
    model = parser.get_parsed_content("gem3d")  # loads autoencoder + stage-2 window model strictly
    assert model.scale > 0
    assert model.informed_model() is not None
    stage1 = parser_with({"window_temporal": False}).get_parsed_content("window_unet_def")
    stage1.load_state_dict(torch.load(os.path.join(MODELS, "window.pt"), weights_only=True), strict=True)
    baseline = parser.get_parsed_content("window_unet_def")  # the mask-only baseline: the same stage-2 network
    baseline.load_state_dict(torch.load(os.path.join(MODELS, "volume_mask_only.pt"), weights_only=True), strict=True)
    parser.get_parsed_content("segmenter_def").load_state_dict(
        torch.load(os.path.join(MODELS, "segmenter.pt"), weights_only=True), strict=True
    )


def test_shipped_model_synthesizes_a_brain(tmp_path):
    from scripts.data.demo_phantom import make_patient
    from scripts.io import save_nifti

    p = make_patient((64, 64, 64), seed=999)  # a patient not in the demo set
    save_nifti(p["label"], p["affine"], str(tmp_path / "mask.nii.gz"))
    save_nifti(p["image"], p["affine"], str(tmp_path / "image.nii.gz"))
    synth = parser_with({"steps": 20}).get_parsed_content("inferer")
    synth.sampler.progress = False
    out = synth.synthesize(
        str(tmp_path / "mask.nii.gz"), 0, "c", image_path=str(tmp_path / "image.nii.gz"), informed={"mode": "true"}
    )
    img, lab = out["image"], p["label"]
    brain, edema = img[lab == 1], img[lab == 2]
    assert brain.mean() > 0.2 and img[lab == 0].max() == 0
    if edema.size > 50:  # FLAIR-like: the synthetic edema is brighter than the synthetic brain
        assert edema.mean() > brain.mean()
    corr = np.corrcoef(img[lab > 0], p["image"][lab > 0])[0, 1]
    assert corr > 0.3, corr  # guided by the true informed slice and the mask, it resembles the real volume
