"""Any label set: read from the datalist, recorded with the weights, used by augmentation, previews and metrics;
and the CT phantoms taken through prepare -> tiny training -> synthesis -> evaluation."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import run_bundle
from scripts.data.ct_phantom import ABDOMEN_CT, make_ct_patient
from scripts.data.label_set import BRATS, LabelSet, from_datalist, label_set
from scripts.data.mask_augment import AugmentSettings, augment_mask
from scripts.errors import Gem3dInputError
from scripts.preview import _centre, save_comparison, zoom_box
from tiny_model import TINY_OVERRIDES


def test_label_set_from_datalist_defaults_and_errors(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "3": "spleen"}, "training": []}))
    ls = from_datalist(str(path))
    assert ls.num_labels == 4  # one-hot width: highest value + 1, gaps allowed
    assert ls.regions == {"liver": (1,), "spleen": (3,)} and ls.focus == (1, 3) and not ls.covers_anatomy
    # the file beside the weights wins over the datalist
    model_file = tmp_path / "label_set.json"
    model_file.write_text(json.dumps(BRATS.as_dict()))
    assert label_set(str(model_file), str(path)) == BRATS
    assert label_set(str(tmp_path / "none.json"), str(path)) == ls
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(Gem3dInputError, match=r"datalist.json has no 'labels' map"):
        from_datalist(str(path))
    with pytest.raises(Gem3dInputError, match=r"region 'tumour' names labels \[7\]"):
        LabelSet({0: "background", 1: "brain"}, {"tumour": [7]})
    with pytest.raises(Gem3dInputError, match="must name label 0"):
        LabelSet({1: "liver"})


def test_augmentation_moves_the_label_sets_lesions_only():
    mask = np.zeros((40, 40, 20), np.int16)
    mask[5:35, 5:35, 2:18] = 1
    mask[6:12, 6:12, 8:12] = 2
    mask[8:10, 8:10, 9:11] = 4
    no_rotation = AugmentSettings(flip=False, max_rotation_deg=0.0, max_shift_fraction=0.5)
    out, params = augment_mask(mask, no_rotation, np.random.default_rng(1), BRATS)
    assert params["lesion_shift_voxels"] != [0, 0, 0]
    assert (out == 2).sum() == (mask == 2).sum() and (out > 0).sum() == (mask > 0).sum()  # moved inside the brain
    assert np.argwhere(out == 2).mean(0)[0] > np.argwhere(mask == 2).mean(0)[0]  # toward the centre
    organs = np.where(mask > 0, 1, 0) + (mask == 2) * 2  # liver 1, kidney 2: no lesion labels in this set
    out, params = augment_mask(organs, no_rotation, np.random.default_rng(1), ABDOMEN_CT)
    np.testing.assert_array_equal(out, organs)
    assert params["lesion_shift_voxels"] is None


def test_preview_centres_on_the_focus_labels():
    mask = np.zeros((20, 20, 20), np.int16)
    mask[2:4, 2:4, 2:4] = 3
    mask[15:17, 15:17, 15:17] = 1
    assert _centre(mask, mask.shape, BRATS.focus) == (2, 2, 2)  # the lesion, not the anatomy label
    assert _centre(mask, mask.shape, (1,)) == (16, 16, 16)
    assert _centre(np.zeros_like(mask), mask.shape, (1,)) == (10, 10, 10)


def test_zoomed_comparison_crops_around_the_focus(tmp_path):
    box, inner = zoom_box((64, 64, 48), (60, 30, 2), 4)
    assert box == (slice(48, 64), slice(22, 38), slice(0, 12)) and inner == (12, 8, 2)  # moved inside the volume
    assert zoom_box((64, 64, 48), (30, 30, 20), 1)[0] == (slice(0, 64), slice(0, 64), slice(0, 48))
    image, mask = np.random.default_rng(0).random((32, 32, 32)), np.zeros((32, 32, 32), np.int16)
    mask[20:24, 20:24, 20:24] = 2
    path = save_comparison(str(tmp_path / "zoom.png"), [("a", image, mask), ("b", image * 0.5, None)], zoom=4)
    assert os.path.getsize(path) > 0


def test_ct_phantom_is_labelled_in_hounsfield_units():
    p = make_ct_patient((32, 32, 24), seed=3)
    assert set(np.unique(p["label"])) == {0, 1, 2, 3, 4}
    assert p["image"][p["label"] == 0].min() < -900  # air around the body
    liver, spleen = p["image"][p["label"] == 1].mean(), p["image"][p["label"] == 3].mean()
    assert 50 < liver < 160 and 50 < spleen < 160
    assert (p["image"][p["label"] == 0] > -200).mean() > 0.2  # unlabelled body: fat, muscle, spine, aorta


CT_TINY = {
    **TINY_OVERRIDES,
    "window": 4,
    "modality": "ct",
    "augment": "ct",
    "ensure_demo": "$scripts.data.demo_phantom.ensure_demo_dataset(@dataset_dir, @datalist, "
    "scripts.data.ct_phantom.build_ct_dataset)",
}


def test_ct_phantoms_prepare_train_synthesize_evaluate(tmp_path):
    """The whole pipeline on a label set with no lesions and a mask that covers only organs."""
    data, models, runs = tmp_path / "ct", tmp_path / "models", tmp_path / "runs"
    run_bundle(
        ["prepare_demo.json", "prepare_ct_demo.json"],
        {"dataset_dir": str(data), "demo_num_train": 4, "demo_num_test": 2, "demo_size": [32, 32, 24]},
    )
    datalist = json.load(open(data / "datalist.json"))
    assert LabelSet.from_dict(datalist, "ct") == ABDOMEN_CT and datalist["modality"] == {"0": "CT"}
    ov = {**CT_TINY, "dataset_dir": str(data), "model_dir": str(models), "run_dir": str(runs)}
    ov["cache_dir"] = str(tmp_path / "cache")
    run_bundle(
        ["inference.json", "train_autoencoder.json"], {**ov, "max_epochs": 1, "batch_size": 16, "val_interval": 1}
    )
    fast = {"samples_per_epoch": 4, "val_samples": 2, "batch_size": 2, "max_epochs": 1}
    run_bundle(["inference.json", "train_diffusion.json", "train_window.json"], {**ov, **fast})
    # stage 1 stands in for the shipped stage-2 weights (same keys without the temporal layers)
    ov.update({"window_file": str(models / "window.pt"), "window_temporal": False})
    assert json.load(open(models / "label_set.json")) == ABDOMEN_CT.as_dict()  # recorded beside the weights
    seg = {"max_epochs": 1, "samples_per_epoch": 2, "val_interval": 1, "seg_patch": [16, 16, 16]}
    run_bundle(["inference.json", "train_segmenter.json"], {**ov, **seg})

    out = tmp_path / "synth"
    run_bundle(["inference.json"], {**ov, "output_dir": str(out), "limit": 1})
    record = json.load(open(next((out / "records").glob("*.json"))))
    assert record["zero_background"] is False  # organ masks: the body around them is generated, not blanked
    image = nib.load(str(next((out / "images").glob("*.nii.gz"))))
    mask = nib.load(str(data / "labelsTs" / "ct_004.nii.gz"))
    np.testing.assert_allclose(image.affine, mask.affine, atol=1e-5)
    assert image.shape == mask.shape
    assert (np.asarray(image.dataobj)[np.asarray(mask.dataobj) == 0] != 0).any()

    rows = {"gem3d_ic": {"informed": {"mode": "ic"}}}
    evaluation = tmp_path / "eval"
    ev = {"eval_dir": str(evaluation), "eval_rows": rows, "eval_repeats": 1}
    run_bundle(["inference.json", "evaluate.json"], {**ov, **ev})
    metrics = json.load(open(evaluation / "metrics.json"))
    organs = ["liver", "kidney", "spleen", "pancreas"]
    assert {f"mask_dice_{o}" for o in organs} <= set(metrics["gem3d_ic"])
    assert np.isfinite(metrics["gem3d_ic"]["grad_anisotropy"]) and np.isfinite(metrics["real_test"]["adjacent_ssim"])
    report = open(evaluation / "report.md").read()
    assert "mask Dice pancreas" in report and "whole_tumour" not in report
    assert os.path.isfile(evaluation / "previews" / "gem3d_ic.png")
