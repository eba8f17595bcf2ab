"""The synthesis job end to end on a tiny model: modes, geometry, determinism, bad input, the main bundle job."""

import json
import os
import re
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from scripts.errors import Gem3dInputError
from scripts.io import save_nifti
from scripts.precision import resolve_precision
from scripts.sampling.results import write_result
from scripts.sampling.sampler import SamplerSettings
from tiny_model import build_synthesizer, make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("tinymodel")
    return make_tiny_model(str(root / "models"), os.path.dirname(tiny_demo))


def _items(tiny_demo, section="test"):
    d = json.load(open(tiny_demo))
    base = os.path.dirname(tiny_demo)
    return [{k: os.path.join(base, v) if k in ("image", "label") else v for k, v in it.items()} for it in d[section]]


def _oblique_mask(path, shape=(40, 28, 11)):
    """A non-isotropic, oblique, non-RAS mask with a brain and a tumour."""
    aff = np.array([[0.0, -1.2, 0.1, 30.0], [0.9, 0.0, 0.0, -20.0], [0.05, 0.0, 3.5, 5.0], [0, 0, 0, 1]])
    m = np.zeros(shape, np.int16)
    m[5:35, 4:24, 1:10] = 1
    m[15:22, 10:16, 3:7] = 2
    m[17:20, 12:14, 4:6] = 4
    save_nifti(m, aff, str(path))
    return aff, m


@pytest.mark.parametrize("mode", ["ic", "ig", "true", "file"])
def test_modes_keep_geometry_and_are_deterministic(tiny, tiny_demo, tmp_path, mode):
    aff, m = _oblique_mask(tmp_path / "mask.nii.gz")
    item = _items(tiny_demo)[0]
    informed = {"mode": mode, "pool": tiny_demo}
    if mode == "file":
        # another in-plane size than the model's: resampled, not rejected
        save_nifti(
            np.random.default_rng(0).random((50, 45, 3)).astype(np.float32), np.eye(4), str(tmp_path / "inf.nii.gz")
        )
        informed = {"mode": "file", "file": str(tmp_path / "inf.nii.gz"), "slice": 1}
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    kw = dict(image_path=item["image"] if mode == "true" else None, informed=informed)
    if mode == "true":
        mask_path = item["label"]
        aff, m = nib.load(mask_path).affine, np.asarray(nib.load(mask_path).dataobj)
    else:
        mask_path = str(tmp_path / "mask.nii.gz")
    a = synth.synthesize(mask_path, 7, "case", **kw)
    b = synth.synthesize(mask_path, 7, "case", **kw)
    assert a["image"].shape == m.shape and a["image"].dtype == np.float32
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].min() >= 0.0 and a["image"].max() <= 1.0  # delivered in the model's intensity range
    np.testing.assert_array_equal(a["mask"], m)
    assert (a["image"][m == 0] == 0).all()
    assert a["record"]["informed"]["mode"] == mode
    paths = write_result(a, str(tmp_path / "out"), f"case_{mode}")
    img = nib.load(paths["image"])
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    np.testing.assert_allclose(img.header.get_zooms(), nib.load(mask_path).header.get_zooms(), atol=1e-5)
    rec = json.load(open(paths["record"]))
    assert rec["seed"] == 7 and rec["sampler"]["steps"] == 3 and os.path.isfile(paths["preview"])
    with pytest.raises(Gem3dInputError, match="already exist"):
        write_result(a, str(tmp_path / "out"), f"case_{mode}")


def test_augmentation_changes_the_mask_and_is_recorded(tiny, tmp_path):
    _oblique_mask(tmp_path / "mask.nii.gz")
    synth = build_synthesizer(tiny, augment="mri")
    synth.sampler.progress = False
    out = synth.synthesize(str(tmp_path / "mask.nii.gz"), 3, "c", informed={"mode": "ig"})
    aug = out["record"]["augmentation"]
    assert {"flip_lr", "rotation_deg", "lesion_shift_fraction"} <= set(aug)
    assert all(abs(d) <= 2.5 for d in aug["rotation_deg"])
    assert out["mask"].shape == (40, 28, 11)
    ct = build_synthesizer(tiny, augment="ct").augment
    assert not ct.flip and ct.max_shift_fraction == 0 and ct.max_rotation_deg == 2.5


def test_bad_input_is_refused_before_any_output(tiny, tiny_demo, tmp_path):
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    save_nifti(np.zeros((8, 8, 8), np.int16), np.eye(4), str(tmp_path / "empty.nii.gz"))
    save_nifti(np.ones((8, 8), np.int16), np.eye(4), str(tmp_path / "flat.nii.gz"))
    save_nifti(np.full((8, 8, 8), 9, np.int16), np.eye(4), str(tmp_path / "labels.nii.gz"))
    _oblique_mask(tmp_path / "ok.nii.gz")
    cases = [
        (str(tmp_path / "empty.nii.gz"), {}, "empty"),
        (str(tmp_path / "flat.nii.gz"), {}, "rank 2"),
        (str(tmp_path / "labels.nii.gz"), {}, "outside the label set"),
        (str(tmp_path / "missing.nii.gz"), {}, "not found"),
        (
            str(tmp_path / "ok.nii.gz"),
            {"informed": {"mode": "file", "file": str(tmp_path / "nope.nii.gz")}},
            "not found",
        ),
        (
            str(tmp_path / "ok.nii.gz"),
            {"informed": {"mode": "file", "file": str(tmp_path / "ok.nii.gz"), "slice": 99}},
            "outside",
        ),
        (str(tmp_path / "ok.nii.gz"), {"position": 1.5}, r"\[0, 1\]"),
        (str(tmp_path / "ok.nii.gz"), {"informed": {"mode": "xx"}}, "mode must be"),
    ]
    for path, kw, match in cases:
        with pytest.raises(Gem3dInputError, match=match):
            synth.synthesize(path, 0, "c", **kw)
    with pytest.raises(RuntimeError) as info:  # the config parser wraps the constructor's error
        build_synthesizer(tiny, overlap=8)
    assert isinstance(info.value.__cause__, Gem3dInputError) and "n > h" in str(info.value.__cause__)
    assert not os.path.exists(tmp_path / "out")


def test_main_job_runs_as_a_bundle(tiny, tiny_demo, tmp_path):
    out = tmp_path / "synth"
    proc = run_bundle(["inference.json"], {**tiny, "output_dir": str(out)})
    d = json.load(open(out / "datalist.json"))
    assert len(d["training"]) == 2
    for entry in d["training"]:
        img = nib.load(str(out / entry["image"]))
        lab = nib.load(str(out / entry["label"]))
        assert img.shape == lab.shape == (32, 32, 32)
        np.testing.assert_allclose(img.affine, lab.affine)
    assert len(os.listdir(out / "previews")) == 2 and len(os.listdir(out / "records")) == 2
    # a second run refuses to overwrite and exits non-zero, leaving the first run's files
    before = sorted(os.listdir(out / "images"))
    again = run_bundle(["inference.json"], {**tiny, "output_dir": str(out)}, check=False)
    assert again.returncode != 0 and "already exist" in (again.stdout + again.stderr)
    assert sorted(os.listdir(out / "images")) == before
    # the co-denoising scheme runs as the main job too, and says so in the record; a bad scheme is refused
    blend = tmp_path / "blend"
    run_bundle(["inference.json"], {**tiny, "output_dir": str(blend), "limit": 1, "sampler_scheme": "blend"})
    (record,) = [json.load(open(blend / "records" / f)) for f in os.listdir(blend / "records")]
    assert record["sampler"]["scheme"] == "blend"
    bad = run_bundle(
        ["inference.json"], {**tiny, "output_dir": str(tmp_path / "bad"), "sampler_scheme": "zigzag"}, check=False
    )
    assert bad.returncode != 0 and "sampler_scheme" in bad.stdout + bad.stderr and "zigzag" in bad.stdout + bad.stderr
    del proc


def test_unwritable_output_folder_fails_cleanly(tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a folder cannot be created below a file, even by root
    proc = run_bundle(["inference.json"], {**tiny, "output_dir": str(blocker / "out")}, check=False)
    assert proc.returncode != 0
    assert "a_file/out" in proc.stdout + proc.stderr and blocker.read_text() == "not a folder"


def test_enhancement_shards_over_two_ranks_without_loss_or_repeat(tiny, tmp_path):
    import subprocess
    import sys

    from conftest import CONFIGS, ROOT

    out = tmp_path / "enhanced"
    files = [os.path.join(CONFIGS, c) for c in ("inference.json", "enhance.json")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29544",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(files),
    ]
    for k, v in {**tiny, "output_dir": str(out), "repeats": 2, "limit": 3}.items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.load(open(out / "records" / f)) for f in sorted(os.listdir(out / "records"))]
    names = [os.path.basename(r["outputs"]["image"]) for r in records]
    assert len(records) == 6 and len(set(names)) == 6  # 3 cases x 2 repeats, each once
    assert {r["seed"] for r in records} == set(range(6))
    d = json.load(open(out / "datalist.json"))
    assert sorted(os.path.basename(e["image"]) for e in d["training"]) == sorted(names)
    assert set(re.findall(r"\[rank (\d)\] ", proc.stdout)) == {"0", "1"}  # both ranks logged their jobs


def test_variant_switches_solver_precision_and_restores(tiny, tiny_demo, tmp_path):
    """Evaluation rows and benchmark settings run through Synthesizer.variant: the override is used and recorded,
    everything is restored afterwards (also after an error), and unknown names are refused."""
    _oblique_mask(tmp_path / "mask.nii.gz")
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    mask = str(tmp_path / "mask.nii.gz")
    base = synth.synthesize(mask, 3, "case")
    assert base["record"]["sampler"]["solver"] == "dpm++2m"
    # the default precision is decided by the hardware, and the record says which and why
    assert base["record"]["sampler"]["precision"] == resolve_precision("auto", "cpu")[0]
    assert base["record"]["sampler"]["precision_reason"].startswith("auto: ")
    scheduler, settings = synth.sampler.scheduler, synth.settings
    slice_calls = []  # the IG slice model samples with the variant's solver and steps too
    hook = synth.model.informed_model().register_forward_hook(lambda *a: slice_calls.append(1))
    with synth.variant({"solver": "ddim", "steps": 2, "eta": 1.0, "precision": "fp32", "informed": {"mode": "ig"}}):
        other = synth.synthesize(mask, 3, "case")
        assert type(synth.sampler.scheduler).__name__ == "DDIMScheduler"
    hook.remove()
    assert len(slice_calls) == 2
    rec = other["record"]
    assert (rec["sampler"]["solver"], rec["sampler"]["steps"], rec["sampler"]["precision"]) == ("ddim", 2, "fp32")
    assert rec["sampler"]["precision_reason"] == "set explicitly"
    assert rec["informed"]["mode"] == "ig" and np.isfinite(other["image"]).all()
    assert synth.sampler.scheduler is scheduler and synth.settings is settings and synth.informed["mode"] == "ic"
    np.testing.assert_array_equal(synth.synthesize(mask, 3, "case")["image"], base["image"])
    # the paper's independent starting noise: runs, differs from the default correlated noise, is recorded
    with synth.variant({"noise_correlation": 0.0}):
        independent = synth.synthesize(mask, 3, "case")
    assert independent["record"]["sampler"]["noise_correlation"] == 0.0
    assert base["record"]["sampler"]["noise_correlation"] == SamplerSettings.noise_correlation > 0
    assert np.isfinite(independent["image"]).all() and not np.array_equal(independent["image"], base["image"])
    with pytest.raises(Gem3dInputError, match="noise_correlation"):
        with synth.variant({"noise_correlation": 1.0}):
            pass
    # co-denoising: reproducible, recorded, not the propagation's volume (a 32-slice mask: 8 slices are one window).
    # MONAI zero-initialises the UNet's output layer, and with a zero prediction both schemes reduce to the same
    # slice-wise solver; random output weights make the prediction depend on the window
    deep = _items(tiny_demo)[0]["label"]
    with torch.no_grad():
        for param in synth.model.window_net.unet.out.parameters():
            param.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    with synth.variant({"scheme": "blend"}):
        blended = synth.synthesize(deep, 3, "case")
        np.testing.assert_array_equal(synth.synthesize(deep, 3, "case")["image"], blended["image"])
    propagated = synth.synthesize(deep, 3, "case")
    assert (
        blended["record"]["sampler"]["scheme"] == "blend" and propagated["record"]["sampler"]["scheme"] == "propagate"
    )
    assert np.isfinite(blended["image"]).all() and not np.array_equal(blended["image"], propagated["image"])
    with pytest.raises(Gem3dInputError, match="sampler_scheme"):
        with synth.variant({"scheme": "zigzag"}):
            pass
    with pytest.raises(Gem3dInputError, match="unknown solver"):
        with synth.variant({"solver": "euler"}):
            pass
    with pytest.raises(Gem3dInputError, match="precision"):
        with synth.variant({"precision": "fp8"}):
            pass
    with pytest.raises(Gem3dInputError, match="unknown synthesis overrides"):
        with synth.variant({"stepz": 3}):
            pass
    # a command line's {"inpaint": false} arrives as the word "false": read as the switch it names, not as a string
    with synth.variant({"inpaint": "false", "batch_waves": "True"}):
        assert synth.settings.inpaint is False and synth.settings.batch_waves is True
    with pytest.raises(Gem3dInputError, match="inpaint must be true or false"):
        with synth.variant({"inpaint": "no thanks"}):
            pass
    assert synth.settings is settings and synth.sampler.settings is settings


def test_lesion_guidance_follows_the_informed_slice_and_is_recorded(tiny, tiny_demo):
    """``lesion_guidance``: "auto" (the default) is the plain model with the volume's own (true) slice, bit for bit,
    and scale 2 with another scan's (IC); a given scale is used as given and recorded; values outside [0, 10] are
    refused before sampling; a label set without lesions gets the plain model from "auto" and refuses a scale."""
    item = next(i for i in _items(tiny_demo) if (np.asarray(nib.load(i["label"]).dataobj) > 1).any())
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    with torch.no_grad():  # MONAI zero-initialises the UNet's output layer: random weights let the mask matter
        for param in synth.model.window_net.unet.out.parameters():
            param.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    true = dict(image_path=item["image"], informed={"mode": "true"})
    ic = dict(informed={**synth.informed, "mode": "ic"})
    base = synth.synthesize(item["label"], 3, "case", **true)
    assert base["record"]["lesion_guidance"]["setting"] == "auto" and base["record"]["lesion_guidance"]["scale"] == 1
    with synth.variant({"lesion_guidance": 1}):
        np.testing.assert_array_equal(synth.synthesize(item["label"], 3, "case", **true)["image"], base["image"])
    auto_ic = synth.synthesize(item["label"], 3, "case", **ic)
    assert auto_ic["record"]["lesion_guidance"] == {"setting": "auto", "scale": 2.0, "source": "auto"}
    with synth.variant({"lesion_guidance": 2}):
        np.testing.assert_array_equal(synth.synthesize(item["label"], 3, "case", **ic)["image"], auto_ic["image"])
    with synth.variant({"lesion_guidance": "1"}):
        plain_ic = synth.synthesize(item["label"], 3, "case", **ic)
    assert np.abs(auto_ic["image"] - plain_ic["image"]).max() > 1e-3
    with synth.variant({"lesion_guidance": 2.5}):
        guided = synth.synthesize(item["label"], 3, "case", **true)
    assert guided["record"]["lesion_guidance"] == {"setting": "2.5", "scale": 2.5, "source": "given"}
    assert np.abs(guided["image"] - base["image"]).max() > 1e-3
    assert synth.lesion_guidance == "auto"
    for bad in (-0.5, 11, float("nan"), "strong"):
        with pytest.raises(Gem3dInputError, match="lesion_guidance must be"):
            with synth.variant({"lesion_guidance": bad}):
                pass
    no_lesions = build_synthesizer(tiny)
    no_lesions.sampler.progress = False
    no_lesions.cfg["labels"] = replace(no_lesions.cfg["labels"], lesion_labels=())
    rec = no_lesions.synthesize(item["label"], 3, "case", **ic)["record"]["lesion_guidance"]
    assert rec["scale"] == 1.0 and "no lesion labels" in rec["source"]
    with pytest.raises(Gem3dInputError, match="lesion_guidance needs a label set with lesion labels"):
        with no_lesions.variant({"lesion_guidance": 2}):
            pass


def test_scanner_noise_follows_the_informed_slice_and_is_recorded(tiny, tiny_demo, tmp_path):
    """``scanner_noise``: the default "auto" adds nothing with the volume's own (true) slice, bit-identical to "none";
    "informed" adds noise at the level measured on the informed slice, reproducibly; IG falls back to the training
    level; "auto" with another scan's slice (IC) adds ``scanner_noise_fraction`` of that slice's level."""
    item = _items(tiny_demo)[0]
    synth = build_synthesizer(tiny)
    synth.sampler.progress = False
    kw = dict(image_path=item["image"], informed={"mode": "true"})
    base = synth.synthesize(item["label"], 5, "case", **kw)
    assert base["record"]["scanner_noise"]["setting"] == "auto" and base["record"]["scanner_noise"]["sigma"] == 0.0
    with synth.variant({"scanner_noise": "none"}):
        np.testing.assert_array_equal(synth.synthesize(item["label"], 5, "case", **kw)["image"], base["image"])
    measured = base["record"]["informed"]["noise_sigma"]
    assert measured > 0
    synth.scanner_noise_fallback = 0.02
    ic = synth.synthesize(item["label"], 5, "case", **{**kw, "informed": {**synth.informed, "mode": "ic"}})
    ic_rec = ic["record"]["scanner_noise"]
    assert ic_rec["sigma"] > 0 and ic_rec["sigma"] == pytest.approx(
        0.7 * ic["record"]["informed"]["noise_sigma"], abs=1e-5
    )
    with synth.variant({"scanner_noise": "none"}):
        ic_clean = synth.synthesize(item["label"], 5, "case", **{**kw, "informed": {**synth.informed, "mode": "ic"}})[
            "image"
        ]
    inside = np.asarray(nib.load(item["label"]).dataobj) > 0
    assert 0.5 * ic_rec["sigma"] < (ic["image"] - ic_clean)[inside].std() < 2.0 * ic_rec["sigma"]
    assert ic_rec["kind"] == "gaussian"
    with synth.variant({"scanner_noise_kind": "rician"}):
        ic_rician = synth.synthesize(item["label"], 5, "case", **{**kw, "informed": {**synth.informed, "mode": "ic"}})
    assert ic_rician["record"]["scanner_noise"]["kind"] == "rician"
    assert ic_rician["record"]["scanner_noise"]["sigma"] == ic_rec["sigma"]
    # zero-mean: the mean brightness inside stays the clean volume's, Rician's rises (delivered volumes are clipped
    # at 0, so the Gaussian mean may rise by a little in dark voxels)
    gauss_shift, rician_shift = (float((v - ic_clean)[inside].mean()) for v in (ic["image"], ic_rician["image"]))
    assert abs(gauss_shift) < rician_shift
    with synth.variant({"scanner_noise": "informed", "scanner_noise_fraction": 1.0}):
        a = synth.synthesize(item["label"], 5, "case", **kw)
        b = synth.synthesize(item["label"], 5, "case", **kw)
        ig = synth.synthesize(item["label"], 5, "case", image_path=None, informed={"mode": "ig"})
    np.testing.assert_array_equal(a["image"], b["image"])
    rec = a["record"]["scanner_noise"]
    assert rec["setting"] == "informed" and rec["source"] == "informed slice"
    assert rec["sigma"] == pytest.approx(measured, abs=1e-5)
    assert 0.5 * measured < (a["image"] - base["image"])[inside].std() < 2.0 * measured
    assert (a["image"][~inside] == 0).all()
    assert ig["record"]["scanner_noise"]["sigma"] == 0.02
    assert ig["record"]["scanner_noise"]["source"].startswith("training")
    with synth.variant({"scanner_noise": 0.05}):
        assert synth.synthesize(item["label"], 5, "case", **kw)["record"]["scanner_noise"]["sigma"] == 0.05
    np.testing.assert_array_equal(synth.synthesize(item["label"], 5, "case", **kw)["image"], base["image"])
    for bad in ({"scanner_noise": "loud"}, {"scanner_noise_fraction": -1}, {"scanner_noise_kind": "pink"}):
        with pytest.raises(Gem3dInputError, match="scanner_noise"):
            with synth.variant(bad):
                pass
    with pytest.raises(RuntimeError) as refused:  # monai.bundle wraps what the constructor raises
        build_synthesizer(tiny, scanner_noise=-1)
    assert isinstance(refused.value.__cause__, Gem3dInputError) and "scanner_noise must be" in str(
        refused.value.__cause__
    )
