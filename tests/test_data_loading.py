"""Datalists, validation of bad input, MSD Task01 reading, normalisation and the model-space round trip."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scripts.data.datalist import load_case, read_datalist, write_brats_datalist
from scripts.data.label_set import BRATS, from_datalist
from scripts.data.model_space import ModelGrid, from_model_space, normalise_intensity, orient_ras, to_model_space
from scripts.errors import Gem3dInputError
from scripts.io import save_nifti


def _oblique_affine():
    a = np.diag([0.9, 1.3, 3.0, 1.0])
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    a[:3, :3] = rot @ a[:3, :3]
    a[:3, :3] = a[:3, :3] @ np.diag([-1, 1, 1])  # an LAS-like, flipped first axis
    a[:3, 3] = [12.0, -40.0, 7.5]
    return a


def _write_case(folder, name, shape=(30, 20, 12), affine=None, labels=(0, 1, 2), image=None):
    affine = _oblique_affine() if affine is None else affine
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32) if image is None else image
    lab = rng.choice(labels, size=shape).astype(np.int16)
    ip, lp = os.path.join(folder, f"img_{name}.nii.gz"), os.path.join(folder, f"lab_{name}.nii.gz")
    save_nifti(img, affine, ip)
    save_nifti(lab, affine, lp)
    return ip, lp


def test_model_space_round_trip_keeps_geometry(tmp_path):
    aff = _oblique_affine()  # voxel size 0.9 x 1.3 x 3.0 mm, rotated and flipped
    vol = np.random.default_rng(0).integers(0, 5, (30, 20, 12)).astype(np.int16)
    arr, geom = to_model_space(vol, aff, ModelGrid(16, (1.8, 1.8, 1.5)), kind="label")
    # RAS extent 27 x 26 x 36 mm: 15 x 14 x 24 voxels at the grid's spacing, padded in-plane to 16
    assert arr.shape == (16, 16, 24) and geom.zoom == 1.0 and geom.resized == [15, 14, 24]
    back = from_model_space(arr, geom, kind="label")
    assert back.shape == vol.shape
    # Down- then up-sampling loses detail, but labels stay labels and the orientation is the input's.
    assert set(np.unique(back)) <= set(np.unique(vol))
    smooth = np.zeros((30, 20, 12), np.float32)
    smooth[5:25, 4:16, 3:9] = 1.0
    arr, geom = to_model_space(smooth, aff, ModelGrid(40, (0.9, 0.9, 1.0)), kind="image")
    back = from_model_space(arr, geom)
    assert np.abs(back - smooth).mean() < 0.05
    # a field of view wider than S at the target spacing is cropped to the foreground; if still too wide, it is
    # zoomed out as a whole (proportions kept)
    arr, geom = to_model_space(smooth, aff, ModelGrid(8, (1.0, 1.0, 1.0)), kind="image")
    assert geom.zoom > 1 and arr.shape[:2] == (8, 8)
    np.testing.assert_allclose(geom.spacing, [geom.zoom] * 3)
    wide = np.zeros((120, 100, 10), np.int16)
    wide[40:70, 30:60, 2:8] = 2  # 30 x 30 mm of anatomy in a 120 x 100 mm field of view
    arr, geom = to_model_space(wide, np.eye(4), ModelGrid(24, (2.0, 2.0, 2.0)), kind="label")
    assert geom.zoom == 1.0 and geom.crop[0][0] > 30 and geom.crop[0][1] < 80 and (arr == 2).sum() > 0
    back = from_model_space(arr, geom, kind="label")
    assert back.shape == wide.shape and (back[:30] == 0).all() and (back == wide).mean() > 0.99


def test_model_space_resamples_along_z_to_the_training_spacing():
    """The same anatomy at 1 mm and at 0.5 x 0.5 x 5 mm lands on the same model grid (nnU-Net-style spacing)."""
    grid = ModelGrid(32, (2.0, 2.0, 2.5))
    x, y, z = np.meshgrid(np.arange(64), np.arange(64), np.arange(80), indexing="ij")
    ball = (((x - 32) ** 2 + (y - 30) ** 2 + ((z - 40) * 1.0) ** 2) < 20**2).astype(np.int16)  # r = 20 mm at 1 mm
    iso, g_iso = to_model_space(ball, np.diag([1.0, 1.0, 1.0, 1.0]), grid, "label")
    x, y, z = np.meshgrid(np.arange(128), np.arange(128), np.arange(16), indexing="ij")
    thick = (((x - 64) * 0.5) ** 2 + ((y - 60) * 0.5) ** 2 + ((z - 8) * 5.0) ** 2 < 20**2).astype(np.int16)
    aniso, g_aniso = to_model_space(thick, np.diag([0.5, 0.5, 5.0, 1.0]), grid, "label")
    assert iso.shape == (32, 32, 32) and aniso.shape == (32, 32, 32)  # 80 mm / 2.5 mm along z for both
    extent = [np.ptp(np.nonzero(a.any((0, 1)))[0]) * 2.5 for a in (iso, aniso)]
    assert abs(extent[0] - extent[1]) <= 5.0 and 30 <= extent[0] <= 45  # the ball's 40 mm, both ways
    assert g_aniso.spacing == [2.0, 2.0, 2.5]
    back = from_model_space(aniso, g_aniso, "label")
    assert back.shape == thick.shape and (back == thick).mean() > 0.97


def test_orient_ras_reorders_axes_and_keeps_world_positions():
    aff = _oblique_affine()
    vol = np.arange(30 * 20 * 12, dtype=np.float32).reshape(30, 20, 12)
    ras, ras_aff = orient_ras(vol, aff)
    assert ras.shape == (30, 20, 12)
    # the voxel that holds a value sits at the same world position before and after
    i, j, k = 3, 5, 7
    where = np.argwhere(ras == vol[i, j, k])[0]
    np.testing.assert_allclose(aff @ [i, j, k, 1], ras_aff @ [*where, 1], atol=1e-4)


def test_normalisation():
    mri = np.zeros((10, 10, 10), np.float32)
    mri[2:8, 2:8, 2:8] = np.linspace(0, 1000, 216).reshape(6, 6, 6)
    out = normalise_intensity(mri, "mri")
    assert out.min() == 0 and 0.99 <= out.max() <= 1.0
    ct = np.array([-1000, -160, 40, 240, 3000], np.float32).reshape(1, 1, 5)
    np.testing.assert_allclose(normalise_intensity(ct, "ct")[0, 0], [0, 0, 0.5, 1, 1], atol=1e-6)
    with pytest.raises(Gem3dInputError, match="modality"):
        normalise_intensity(ct, "pet")


def test_datalist_errors_name_the_file(tmp_path):
    with pytest.raises(Gem3dInputError, match="datalist not found"):
        read_datalist(str(tmp_path / "missing.json"))
    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"training": []}))
    with pytest.raises(Gem3dInputError, match="empty 'training' list"):
        read_datalist(str(dl))
    dl.write_text(json.dumps({"training": [{"image": "nope.nii.gz", "label": "nope_l.nii.gz"}]}))
    with pytest.raises(Gem3dInputError, match="nope.nii.gz"):
        read_datalist(str(dl))
    dl.write_text("{not json")
    with pytest.raises(Gem3dInputError, match="not valid JSON"):
        read_datalist(str(dl))


def test_case_validation(tmp_path):
    ip, lp = _write_case(str(tmp_path), "ok")
    grid = ModelGrid(16, (1.8, 1.8, 3.0))
    case = load_case({"image": ip, "label": lp}, grid, num_labels=5)
    assert case["image"].shape == (16, 16, 12) and case["label"].shape == (16, 16, 12)
    assert case["geometry"].shape == [30, 20, 12]
    ip2, lp2 = _write_case(str(tmp_path), "bad", labels=(0, 1, 7))
    with pytest.raises(Gem3dInputError, match=r"lab_bad.*outside the label set"):
        load_case({"image": ip2, "label": lp2}, grid, num_labels=5)
    ip3, _ = _write_case(str(tmp_path), "shape", shape=(30, 20, 11))
    with pytest.raises(Gem3dInputError, match="shape"):
        load_case({"image": ip3, "label": lp}, grid, num_labels=5)
    _, lp4 = _write_case(str(tmp_path), "aff", affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(Gem3dInputError, match="different affines"):
        load_case({"image": ip, "label": lp4}, grid, num_labels=5)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not nifti")
    with pytest.raises(Gem3dInputError, match="broken.nii.gz.*not a readable NIfTI"):
        load_case({"image": str(broken)}, grid, num_labels=5)


def test_msd_task01_folder_is_read_with_flair_and_mapped_labels(tmp_path):
    """A fake MSD Task01 folder in the real layout: 4-channel images, labels 0..3."""
    task = tmp_path / "Task01_BrainTumour"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    entries = []
    for i in range(5):
        img = np.zeros((12, 12, 8, 4), np.float32)
        img[2:10, 2:10, 1:7, 0] = 100.0 + i  # FLAIR (channel 0) has the brain
        img[..., 1] = 7.0
        lab = np.zeros((12, 12, 8), np.uint8)
        lab[4:8, 4:8, 2:6] = 1
        lab[5:7, 5:7, 3:5] = 3
        nib.save(nib.Nifti1Image(img, np.diag([1, 1, 2, 1.0])), str(task / "imagesTr" / f"BRATS_{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.diag([1, 1, 2, 1.0])), str(task / "labelsTr" / f"BRATS_{i:03d}.nii.gz"))
        entries.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
    meta = {
        "name": "BRATS",
        "description": "fake",
        "reference": "fake",
        "licence": "CC-BY-SA 4.0",
        "release": "2.0",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": 5,
        "numTest": 0,
        "training": entries,
        "test": [],
    }
    (task / "dataset.json").write_text(json.dumps(meta))
    out = write_brats_datalist(str(tmp_path), str(tmp_path / "gem3d_brats.json"), val_frac=0.2)
    datalist = read_datalist(out, ("training", "test"))
    train, test = datalist["training"], datalist["test"]
    assert len(train) == 4 and len(test) == 1 and from_datalist(out) == BRATS
    case = load_case(train[0], ModelGrid(12, (1.0, 1.0, 2.0)), num_labels=5)
    assert set(np.unique(case["label"])) == {0, 1, 2, 4}  # brain from FLAIR > 0, edema 1->2, enhancing 3->4
    assert case["image"].max() <= 1.0 and case["image"][case["label"] == 0].max() == 0
    with pytest.raises(Gem3dInputError, match="dataset.json not found"):
        write_brats_datalist(str(tmp_path / "elsewhere"), str(tmp_path / "x.json"))


def test_datalist_read_by_a_relative_path_gives_absolute_paths(tmp_path, monkeypatch):
    """Items go to jobs that write their own datalists elsewhere (the downstream study): paths must not stay
    relative to the folder the datalist was read from."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    save_nifti(np.zeros((4, 4, 4), np.float32), np.eye(4), str(tmp_path / "data" / "images" / "a.nii.gz"))
    with open(tmp_path / "data" / "datalist.json", "w") as f:
        json.dump({"training": [{"image": "images/a.nii.gz"}]}, f)
    monkeypatch.chdir(tmp_path)
    item = read_datalist(os.path.join("data", "datalist.json"))["training"][0]
    assert os.path.isabs(item["image"]) and item["image"] == str(tmp_path / "data" / "images" / "a.nii.gz")
