import json
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import run_bundle
from scripts.data.demo_phantom import build_demo_dataset, make_patient
from scripts.errors import Gem3dInputError


def test_patient_is_deterministic_and_labelled():
    a, b = make_patient((32, 32, 32), seed=7), make_patient((32, 32, 32), seed=7)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    c = make_patient((32, 32, 32), seed=8)
    assert not np.array_equal(a["image"], c["image"])
    assert set(np.unique(a["label"])) <= {0, 1, 2, 3, 4}
    assert (a["label"] > 0).mean() > 0.2  # a brain fills a good part of the field of view
    brain = a["label"] == 1
    assert a["image"][brain].mean() > 0.2 and a["image"][a["label"] == 0].max() == 0  # skull-stripped background


def test_scanner_and_tumours_vary_between_patients():
    patients = [make_patient((32, 32, 32), seed=s) for s in range(8)]
    counts = {p["params"]["tumours"] for p in patients}
    assert len(counts) > 1
    gammas = {round(p["params"]["scanner"]["gamma"], 3) for p in patients}
    assert len(gammas) == 8
    with_tumour = [p for p in patients if p["params"]["tumours"] > 0]
    assert with_tumour and all((p["label"] >= 2).any() for p in with_tumour)
    # FLAIR-like: edema brighter than normal brain.
    p = max(with_tumour, key=lambda q: (q["label"] == 2).sum())
    assert p["image"][p["label"] == 2].mean() > p["image"][p["label"] == 1].mean()


def test_non_cubic_size_and_geometry():
    p = make_patient((40, 48, 24), seed=3)
    assert p["image"].shape == (40, 48, 24) and p["label"].shape == (40, 48, 24)
    spacing = np.abs(np.diag(p["affine"])[:3])
    assert not np.allclose(p["affine"], np.eye(4))
    assert spacing[2] > spacing[0]  # fewer slices over a similar extent: thicker slices


def test_dataset_files_datalist_and_no_overwrite(tiny_demo):
    folder = os.path.dirname(tiny_demo)
    with open(tiny_demo) as f:
        dl = json.load(f)
    assert len(dl["training"]) == 4 and len(dl["test"]) == 2
    item = dl["training"][0]
    img = nib.load(os.path.join(folder, item["image"]))
    lab = nib.load(os.path.join(folder, item["label"]))
    assert img.shape == lab.shape == (32, 32, 32)
    np.testing.assert_allclose(img.affine, lab.affine)
    assert not np.allclose(img.affine, np.eye(4))
    assert os.path.isfile(os.path.join(folder, "previews", "demo_000.png"))
    assert os.stat(os.path.join(folder, item["image"])).st_mode & 0o777 == 0o644  # shared results, not private
    stats = json.load(open(os.path.join(folder, "statistics.json")))
    assert stats["summary"]["patients"] == 6
    # Same spec: reused. Other spec: refused, and the user's files are untouched.
    mtime = os.path.getmtime(os.path.join(folder, item["image"]))
    assert build_demo_dataset(folder, 4, 2, (32, 32, 32), seed=1) == tiny_demo
    with pytest.raises(Gem3dInputError, match="another spec"):
        build_demo_dataset(folder, 5, 2, (32, 32, 32), seed=1)
    assert os.path.getmtime(os.path.join(folder, item["image"])) == mtime


def test_prepare_demo_bundle_run_is_deterministic(tmp_path):
    for name in ("a", "b"):
        run_bundle(
            ["prepare_demo.json"],
            {"dataset_dir": str(tmp_path / name), "demo_num_train": 2, "demo_num_test": 1, "demo_size": [24, 24, 16]},
        )
    for rel in ("imagesTr/demo_000.nii.gz", "labelsTs/demo_002.nii.gz"):
        a = nib.load(str(tmp_path / "a" / rel)).get_fdata()
        b = nib.load(str(tmp_path / "b" / rel)).get_fdata()
        assert a.shape == (24, 24, 16)
        np.testing.assert_array_equal(a, b)


def test_graded_demo_classes_are_in_the_datalist_images_and_masks(tmp_path):
    from scripts.data.model_space import ModelGrid
    from scripts.data.volume_dataset import class_items

    for seed in (3, 4):
        hgg, lgg = (make_patient((32, 32, 32), seed=seed, grade=g) for g in ("HGG", "LGG"))
        assert hgg["params"]["tumours"] == 1 and (hgg["label"] == 4).any()  # enhancing rim
        assert lgg["params"]["tumours"] == 1 and not (lgg["label"] == 4).any() and (lgg["label"] == 3).any()
        # same patient, same anatomy and scanner: only the tumour differs
        assert np.array_equal(hgg["label"] == 0, lgg["label"] == 0)
    with pytest.raises(Gem3dInputError, match="grade"):
        make_patient((16, 16, 16), grade="GBM")
    datalist = build_demo_dataset(str(tmp_path), num_train=2, num_test=2, size=(24, 24, 24), previews=0, grades=True)
    content = json.load(open(datalist))
    assert [it["class"] for it in content["training"] + content["test"]] == ["HGG", "LGG", "HGG", "LGG"]
    grid = ModelGrid(24, (2.0, 2.0, 2.0), (24, 24))
    items = class_items([[datalist, "test"]], grid, 5, "mri", "class", ["LGG", "HGG"])
    assert [it["label"] for it in items] == [1, 0] and items[0]["image"].shape[0] == 1
    with pytest.raises(Gem3dInputError, match="'grade' is None"):
        class_items([[datalist, "test"]], grid, 5, "mri", "grade", ["LGG", "HGG"])
