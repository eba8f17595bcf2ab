"""Diffusion pretraining with anatomical guidance: the demo's coordinate maps, the pretext variants and the
coordinate regressor end to end on a tiny set, the backbone transfer into the segmenter, the study."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from scipy import ndimage
from scripts.errors import Gem3dInputError
from tiny_model import make_tiny_model

TINY_PRETRAIN = {"pretrain_patch": [16, 16, 16], "max_epochs": 1, "samples_per_epoch": 4, "batch_size": 2}


@pytest.fixture(scope="module")
def coords_demo(tmp_path_factory):
    from scripts.data.demo_phantom import build_demo_dataset

    out = str(tmp_path_factory.mktemp("demo_coords"))
    return build_demo_dataset(out, num_train=4, num_test=2, size=(32, 32, 32), seed=1, previews=0, coordinates=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, coords_demo):
    root = tmp_path_factory.mktemp("tinymodel")
    ov = make_tiny_model(str(root / "models"), os.path.dirname(coords_demo))
    return {**ov, "pretrain_dir": str(root / "pretraining")}


def test_coordinate_maps_invert_the_demo_deformation(coords_demo):
    from scripts.data.demo_phantom import _warp_anatomy, load_template, make_patient

    tpl = load_template()
    tissue, mni = _warp_anatomy(tpl, (20, 24, 18), np.random.default_rng(4), torch.Generator().manual_seed(4))
    assert mni.shape == (20, 24, 18, 3)
    # the template sampled where the map says every voxel came from is the patient's anatomy, voxel for voxel
    inv = np.linalg.inv(tpl.affine)
    index = (mni.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]).T
    for k in range(4):
        back = ndimage.map_coordinates(tpl.tissue[k].numpy(), index, order=1).reshape(mni.shape[:3])
        np.testing.assert_allclose(back, tissue[k], atol=2e-4)
    # a landmark: the template voxel nearest the MNI origin (anterior commissure) is where the map puts (0, 0, 0)
    nearest = np.unravel_index(np.argmin(np.linalg.norm(mni, axis=-1)), mni.shape[:3])
    assert np.linalg.norm(mni[nearest]) < 0.75 * np.linalg.norm(tpl.extent_mm / np.array(mni.shape[:3]))
    # maps change nothing else: the same patient with and without them
    a, b = make_patient((16, 16, 16), seed=3), make_patient((16, 16, 16), seed=3, coordinates=True)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert "coordinates" not in a and b["coordinates"].shape == (16, 16, 16, 3)
    # written with the dataset, on the image's grid, listed in the datalist
    item = json.load(open(coords_demo))["training"][0]
    base = os.path.dirname(coords_demo)
    img, cmap = nib.load(os.path.join(base, item["image"])), nib.load(os.path.join(base, item["coordinates"]))
    assert cmap.shape == (*img.shape, 3) and np.allclose(cmap.affine, img.affine)


def test_pretext_variants_and_coordinate_regressor_run(tiny, coords_demo, tmp_path):
    base = {**tiny, "dataset_dir": os.path.dirname(coords_demo), **TINY_PRETRAIN}
    for pretext, channels in (("diffusion", 1), ("diffusion_coordinates", 4), ("restorative", 1)):
        head = {"coordinate_head": "output"}  # the guidance from the output head (the default: the bottleneck, below)
        run_bundle(["inference.json", "pretrain_segmenter.json"], {**base, "pretext": pretext, **head})
        state = torch.load(os.path.join(tiny["pretrain_dir"], f"backbone_{pretext}.pt"), weights_only=True)
        assert state["conv_final.2.conv.weight"].shape[0] == channels
        assert os.path.isfile(
            os.path.join(tiny["pretrain_dir"], f"backbone_{pretext}", f"backbone_{pretext}_curve.json")
        )
    # guidance from the bottleneck: the output head restores, a head on the deepest features gives the coordinates
    deep = {**base, "pretext": "diffusion_coordinates", "pretrain_name": "deep"}
    run_bundle(["inference.json", "pretrain_segmenter.json"], deep)
    state = torch.load(os.path.join(tiny["pretrain_dir"], "deep.pt"), weights_only=True)
    assert state["conv_final.2.conv.weight"].shape[0] == 1 and state["coordinate_head.2.weight"].shape[0] == 3
    run_bundle(["inference.json", "pretrain_segmenter.json", "train_coordinates.json"], {**base, "max_epochs": 2})
    assert os.path.isfile(os.path.join(tiny["model_dir"], "coordinates.pt"))
    err = json.load(open(os.path.join(tiny["pretrain_dir"], "coordinates", "test_error_mm.json")))
    assert len(err["cases"]) == 2 and 0 < err["median_mm"] < 500
    # volumes without maps (here: a datalist without the coordinates key) get the regressor's coordinates
    data = json.load(open(coords_demo))
    folder = os.path.dirname(coords_demo)
    plain = {
        "training": [
            {k: os.path.join(folder, v) for k, v in it.items() if k in ("image", "label")} for it in data["training"]
        ]
    }
    json.dump(plain, open(tmp_path / "plain.json", "w"))
    sources = f"$[['{tmp_path / 'plain.json'}', 'training']]"
    run_bundle(
        ["inference.json", "pretrain_segmenter.json"],
        {**base, "pretrain_sources": sources, "use_coordinate_regressor": True, "pretrain_name": "synthetic"},
    )
    from scripts.data.pretrain_dataset import load_unlabelled
    from scripts.engines.pretext import PretextTask
    from tiny_model import parser_with

    parser = parser_with(
        {**base, "pretrain_sources": sources, "use_coordinate_regressor": True},
        ("inference.json", "pretrain_segmenter.json"),
    )
    cases = parser.get_parsed_content("train#cases")
    assert all(c["coordinates"] is not None and c["coordinates"].shape[0] == 3 for c in cases)
    bare = load_unlabelled([[str(tmp_path / "plain.json"), "training"]], parser.get_parsed_content("model_grid"), 5)
    assert all(c["coordinates"] is None for c in bare)
    # without coordinates the guidance term is simply not supervised (mask 0), the restoration term still is
    task = PretextTask("diffusion_coordinates")
    from scripts.data.pretrain_dataset import PretextDataset

    item = PretextDataset(bare, (16, 16, 16), samples=1, corruption=task.corruption)[0]
    assert item["label"][4].sum() == 0 and item["image"].shape == (1, 16, 16, 16)
    assert not torch.equal(item["image"], item["label"][:1])


def test_backbone_transfers_exactly_and_freezes(tiny, tmp_path):
    from scripts.networks.backbone import PretextSegResNet, segmenter_from_backbone
    from tiny_model import parser_with

    parser = parser_with(tiny, ("inference.json", "pretrain_segmenter.json"))
    pretrained = parser.get_parsed_content("pretrain_network_def")
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(1.0)  # unlike any fresh initialisation
    torch.save(pretrained.state_dict(), tmp_path / "backbone.pt")
    segmenter = parser.get_parsed_content("segmenter_def")
    own_head = {k: v.clone() for k, v in segmenter.state_dict().items() if k.startswith("conv_final.")}
    net = segmenter_from_backbone(segmenter, str(tmp_path / "backbone.pt"))
    src, dst = pretrained.state_dict(), net.state_dict()
    transferred = [k for k in dst if not k.startswith("conv_final.")]
    assert transferred and all(torch.equal(dst[k], src[k]) for k in transferred)
    assert all(torch.equal(dst[k], own_head[k]) for k in own_head)  # the head is the segmenter's own
    assert all(p.requires_grad for p in net.parameters())
    frozen = segmenter_from_backbone(
        parser_with(tiny).get_parsed_content("segmenter_def"), str(tmp_path / "backbone.pt"), True
    )
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("conv_final.") for n in trainable)
    out = frozen(torch.rand(1, 1, 16, 16, 16))
    assert out.shape[1] == 5
    other = parser_with({**tiny, "segmenter_def#init_filters": 16}).get_parsed_content("segmenter_def")
    with pytest.raises(Gem3dInputError, match="does not fit the segmenter"):
        segmenter_from_backbone(other, str(tmp_path / "backbone.pt"))
    # a backbone pretrained with the bottleneck coordinate head: the same keys transfer, neither head does
    deep = parser_with(
        {**tiny, "pretext": "diffusion_coordinates", "coordinate_head": "bottleneck"},
        ("inference.json", "pretrain_segmenter.json"),
    ).get_parsed_content("pretrain_network_def")
    x = torch.rand(2, 1, 16, 16, 16)
    assert deep(x).shape == (2, 4, 16, 16, 16)
    with torch.no_grad():
        for p in deep.parameters():
            p.add_(1.0)
    torch.save(deep.state_dict(), tmp_path / "deep.pt")
    segmenter = parser_with(tiny).get_parsed_content("segmenter_def")
    net, src = segmenter_from_backbone(segmenter, str(tmp_path / "deep.pt")), deep.state_dict()
    transferred = [k for k in net.state_dict() if not k.startswith("conv_final.")]
    assert transferred and all(torch.equal(net.state_dict()[k], src[k]) for k in transferred)
    assert not any(k.startswith("coordinate_head.") for k in net.state_dict())
    with pytest.raises(Gem3dInputError, match="coordinate_head"):
        PretextSegResNet(out_channels=4, coordinate_head="middle", spatial_dims=3)
    with pytest.raises(Gem3dInputError, match="needs a pretext with coordinates"):
        PretextSegResNet(out_channels=1, coordinate_head="bottleneck", spatial_dims=3)


def test_pretrain_study_end_to_end(tiny, coords_demo, tmp_path):
    out = tmp_path / "study"
    run_bundle(
        ["inference.json", "train_segmenter.json", "pretrain_study.json"],
        {
            **tiny,
            "dataset_dir": os.path.dirname(coords_demo),
            "pretrain_dir": str(out),
            "pretrain_epochs": 1,
            "pretrain_samples": 2,
            "pretrain_variants": {
                "diffusion_coordinates": {"pretext": "diffusion_coordinates", "pretrain_patch": [16, 16, 16]}
            },
            "label_fractions": [0.5],
            "study_seeds": [0],
            "max_epochs": 1,
            "samples_per_epoch": 2,
            "val_interval": 1,
            "seg_patch": [16, 16, 16],
            "segmenter_init_filters": 16,  # the study's width reaches the pretraining and the segmenter runs
        },
        timeout=900,
    )
    for weights in (out / "diffusion_coordinates.pt", out / "scratch_frozen_50pct" / "seed0" / "segmenter.pt"):
        assert torch.load(weights, weights_only=True)["convInit.conv.weight"].shape[0] == 16
    summary = json.load(open(out / "downstream.json"))["summary"]
    assert set(summary) == {
        f"{i}_{p}_50pct" for i in ("scratch", "diffusion_coordinates") for p in ("frozen", "finetune")
    }
    # the study scores every label on its own beside the regions (a weak segmenter learns the anatomy first)
    assert {"whole_tumour", "label_brain", "label_edema"} <= set(summary["scratch_frozen_50pct"])
    timing = json.load(open(out / "pretraining.json"))["backbones"]["diffusion_coordinates"]
    assert timing["seconds"] > 0
    subset = json.load(open(out / "labels_scratch_frozen_50pct.json"))["training"]
    assert len(subset) == 2  # half of the 4 training labels
