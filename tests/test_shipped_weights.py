"""The weights in bundle/models load into the networks inference.json declares, and synthesize a demo volume."""

import os

import nibabel as nib
import numpy as np
import torch
from conftest import BUNDLE
from scripts.sampling.model import window_weights_file
from scripts.sampling.volume_model import controlnet_weights_file
from tiny_model import parser_with

MODELS = os.path.join(BUNDLE, "models")
FILES = [
    "autoencoder.pt",
    "window.pt",
    "volume.pt",
    "informed.pt",
    "segmenter.pt",
    "volume_mask_only.pt",
    "volume_reward.pt",
    "volume_reward_ic.pt",
    "latent_scale.json",
    "model_grid.json",
    "joint_autoencoder.pt",
    "joint_unet.pt",
    "joint_latent_scale.json",
    "joint_attributes.json",
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
    stage2 = torch.load(os.path.join(MODELS, "volume.pt"), weights_only=True)
    for name in ("reward", "reward_ic"):  # reward fine-tuning trains the pseudo-3D layers alone, and moved them
        tuned = torch.load(window_weights_file(MODELS, name), weights_only=True)
        baseline.load_state_dict(tuned, strict=True)
        moved = {k for k in stage2 if not torch.equal(tuned[k], stage2[k])}
        assert moved and all(k.startswith("temporal.") for k in moved), name
    # the 3D backend's reward-tuned ControlNet (--medlord_weights reward): the same network as the starting one, moved
    start, tuned = (torch.load(controlnet_weights_file(MODELS, n), weights_only=True) for n in ("default", "reward"))
    parser.get_parsed_content("medlord_controlnet_def").load_state_dict(tuned, strict=True)
    assert any(not torch.equal(tuned[k], start[k]) for k in start)
    parser.get_parsed_content("segmenter_def").load_state_dict(
        torch.load(os.path.join(MODELS, "segmenter.pt"), weights_only=True), strict=True
    )


def test_shipped_model_synthesizes_a_brain(tmp_path):
    from scripts.data.demo_phantom import make_patient
    from scripts.io import save_nifti

    p = make_patient((64, 64, 64), seed=999)  # a patient not in the demo set
    save_nifti(p["label"], p["affine"], str(tmp_path / "mask.nii.gz"))
    save_nifti(p["image"], p["affine"], str(tmp_path / "image.nii.gz"))
    synth = parser_with({"steps": 20}).get_parsed_content("synthesizer")
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


def _resample_mask(label, affine, new_affine, new_shape):
    """Nearest-neighbour resampling of a label map onto another world grid (the test's own, independent path)."""
    from scipy import ndimage

    vox = np.linalg.inv(affine) @ new_affine
    return ndimage.affine_transform(
        label.astype(np.int16), vox[:3, :3], vox[:3, 3], output_shape=new_shape, order=0, mode="constant"
    )


def _oblique(spacing, angle=0.2):
    c, s = np.cos(angle), np.sin(angle)
    a = np.eye(4)
    a[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag(spacing)
    a[:3, :3] = a[:3, :3] @ np.diag([-1, 1, 1])  # an L-first axis order, as many scanners write
    return a


def test_any_spacing_round_trips_with_geometry_and_through_plane_structure(tmp_path):
    """A 1 mm oblique non-cubic mask and a 0.5 x 0.5 x 5 mm mask: written on their own grids, and their
    through-plane structure in model space compares with that of the 64^3 demo-grid output."""
    from scripts.data.demo_phantom import make_patient
    from scripts.data.model_space import to_model_space
    from scripts.io import save_nifti
    from scripts.metrics.consistency import gradient_anisotropy
    from scripts.sampling.results import write_result

    p = make_patient((64, 64, 64), seed=998)
    synth = parser_with({"steps": 10}).get_parsed_content("synthesizer")
    synth.sampler.progress = False
    grid = synth.cfg["grid"]
    extent = np.asarray(p["label"].shape) * np.abs(np.diag(p["affine"])[:3])
    grids = {"demo": (p["affine"], p["label"].shape)}
    for name, spacing in (("iso1mm", (1.0, 1.0, 1.0)), ("thick5mm", (0.5, 0.5, 5.0))):
        aff = _oblique(spacing)
        shape = tuple(int(np.ceil(e / s)) for e, s in zip(extent, spacing))
        centre_vox = (np.asarray(shape) - 1) / 2.0
        aff[:3, 3] = p["affine"][:3, :3] @ ((np.asarray(p["label"].shape) - 1) / 2.0) + p["affine"][:3, 3]
        aff[:3, 3] -= aff[:3, :3] @ centre_vox
        grids[name] = (aff, shape)
    anisotropy = {}
    for name, (aff, shape) in grids.items():
        label = p["label"] if name == "demo" else _resample_mask(p["label"], p["affine"], aff, shape)
        path = str(tmp_path / f"{name}.nii.gz")
        save_nifti(label, aff, path)
        out = synth.synthesize(path, 0, name, informed={"mode": "ig"})
        assert out["image"].shape == label.shape and (out["image"][label == 0] == 0).all()
        written = write_result(out, str(tmp_path / "out"), name)
        img = nib.load(written["image"])
        np.testing.assert_allclose(img.affine, aff, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms(), nib.load(path).header.get_zooms(), atol=1e-5)
        ms = out["record"]["model_space"]
        np.testing.assert_allclose(ms["spacing_mm"], grid.spacing, rtol=0.02)
        assert abs(ms["shape"][2] - 64) <= 6  # the same anatomy spans the same number of model slices
        image_ms, _ = to_model_space(out["image"], aff, grid, "image")
        label_ms, _ = to_model_space(label, aff, grid, "label")
        anisotropy[name] = gradient_anisotropy(image_ms, label_ms)
    for name in ("iso1mm", "thick5mm"):
        assert 0.6 < anisotropy[name] / anisotropy["demo"] < 1.6, anisotropy


def test_medlord_patchwise_decoding_matches_whole_volume_decoding():
    """The 3D backend decodes by overlapping latent patches (memory bounded by the patch): on a real demo volume,
    32^3-voxel patches agree with decoding the whole volume at once, and leave no seam across patch borders."""
    from scripts.data.datalist import load_case, read_datalist
    from scripts.networks.latents import encode_volume

    parser = parser_with({})
    model = parser.get_parsed_content("medlord_model")
    demo = os.path.join(BUNDLE, "data", "demo", "datalist.json")
    if not os.path.isfile(demo):
        from scripts.data.demo_phantom import build_demo_dataset

        demo = build_demo_dataset(os.path.join(BUNDLE, "data", "demo"))
    item = read_datalist(demo, ("test",))["test"][0]
    image = load_case(item, parser.get_parsed_content("model_grid"), 5)["image"]
    latent = encode_volume(model.autoencoder, image, "cpu")
    with torch.inference_mode():
        whole = model.autoencoder.decode(latent[None])[0, 0].numpy()
    model.decode_patch, model.decode_overlap = (8, 8, 8), 0.5
    patched = model.decode(latent * model.scale)
    psnr = 10 * np.log10(1.0 / np.mean((patched - whole) ** 2))
    assert psnr > 27.0, psnr  # the autoencoder's own reconstruction error is larger (about 25 dB)
    through = np.abs(np.diff(patched, axis=2)).mean((0, 1)) / np.abs(np.diff(whole, axis=2)).mean((0, 1)).clip(1e-6)
    assert through.max() < 2.0, through.round(2)


def test_shipped_joint_model_generates_a_labelled_brain_with_the_requested_tumour():
    """The joint model's shipped weights: a requested 20 ml tumour comes out as a brain with a tumour of the right
    order of size where asked, edema brighter than the brain around it (the image follows its own mask)."""
    from scripts.data.tumour_attributes import tumour_attributes

    parser = parser_with({})
    generator = parser.get_parsed_content("case_generator")
    generator.progress = False
    request = {"volume_ml": 20.0, "centre_x": 0.35, "centre_y": 0.6, "centre_z": 0.55}
    result = generator.generate(request, seed=0)
    image, mask = result["image"], result["mask"]
    assert image.shape == mask.shape == (64, 64, 64) and set(np.unique(mask)) <= {0, 1, 2, 3, 4}
    brain = mask > 0
    assert 0.15 < brain.mean() < 0.6 and image[~brain].max() == 0  # a skull-stripped brain, background zero
    achieved = tumour_attributes(mask, generator.grid.spacing, (2, 3, 4))
    assert achieved == result["record"]["achieved"]
    assert 5.0 < achieved["volume_ml"] < 60.0
    assert abs(achieved["centre_x"] - 0.35) < 0.25 and abs(achieved["centre_y"] - 0.6) < 0.25
    assert image[mask == 2].mean() > image[mask == 1].mean() + 0.05  # FLAIR-like: edema bright
