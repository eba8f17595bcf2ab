"""The joint image + mask model (slice-based LDM with tumour attributes): the tumour vector on analytic shapes,
request checks, draws from the training distribution, the conditioning network, and the jobs end to end."""

import glob
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from tiny_model import TINY_OVERRIDES, make_tiny_model, parser_with

LESIONS = (2, 3, 4)


def _brain_with_sphere(spacing, radius_mm, centre_vox, shape=(80, 80, 80)):
    label = np.zeros(shape, np.uint8)
    label[10:70, 10:70, 10:70] = 1  # the anatomy's box: voxels 10..69
    idx = np.indices(shape).astype(float)
    dist = np.sqrt(sum(((idx[a] - centre_vox[a]) * spacing[a]) ** 2 for a in range(3)))
    label[dist <= radius_mm] = 2
    label[dist <= radius_mm / 2] = 4
    return label


def test_tumour_vector_of_a_sphere_and_a_healthy_case():
    from scripts.data.tumour_attributes import tumour_attributes

    spacing = (1.0, 1.2, 1.5)  # anisotropic voxels: volume and area are in mm
    radius = 15.0
    att = tumour_attributes(_brain_with_sphere(spacing, radius, (40, 40, 40)), spacing, LESIONS)
    true_ml = 4 / 3 * np.pi * radius**3 / 1000
    assert abs(att["volume_ml"] - true_ml) / true_ml < 0.03
    assert abs(att["surface_mm2"] - 4 * np.pi * radius**2) / (4 * np.pi * radius**2) < 0.12
    assert 0.88 < att["sphericity"] <= 1.02
    for axis, key in enumerate("xyz"):  # centred box of width 2r inside a 60-voxel anatomy box
        assert abs(att[f"centre_{key}"] - 0.5) < 0.02
        assert abs(att[f"extent_{key}"] - 2 * radius / spacing[axis] / 60) < 0.04
    assert att["count"] == 1 and abs(sum(att["sub_region_fractions"].values()) - 1) < 1e-6
    assert 0.05 < att["sub_region_fractions"][4] < 0.2  # half the radius: an eighth of the volume

    # an elongated box is less spherical; a left-right flip mirrors the centre
    label = np.zeros((80, 80, 80), np.uint8)
    label[10:70, 10:70, 10:70] = 1
    label[15:39, 30:33, 30:33] = 2  # a 24 x 3 x 3 rod: sphericity 0.57 by exact faces
    box = tumour_attributes(label, (1, 1, 1), LESIONS)
    assert box["sphericity"] < 0.75 and box["volume_ml"] == pytest.approx(0.216)
    flipped = tumour_attributes(label[::-1], (1, 1, 1), LESIONS)
    assert flipped["centre_x"] == pytest.approx(1 - box["centre_x"])

    healthy = tumour_attributes(np.ones((20, 20, 20), np.uint8), (1, 1, 1), LESIONS)
    assert healthy["volume_ml"] == 0 and healthy["count"] == 0 and healthy["sphericity"] == 0


def test_lesions_outside_the_anatomy_are_counted():
    from scripts.data.tumour_attributes import lesions_outside

    label = np.zeros((60, 60, 60), np.uint8)
    label[10:50, 10:50, 10:50] = 1
    label[25:30, 25:30, 25:30] = 2  # inside
    assert lesions_outside(label, LESIONS, (1,)) == 0
    label[52:57, 52:57, 52:57] = 2  # floating in the background
    assert lesions_outside(label, LESIONS, (1,)) == 1
    label[45:50, 20:25, 20:25] = 4  # at the surface, still in the anatomy
    assert lesions_outside(label, LESIONS, (1,)) == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"volume_ml": -3}, "volume_ml=-3 is out of range"),
        ({"sphericity": 1.4}, r"sphericity=1.4 is out of range; valid: \[0.0, 1.0\]"),
        ({"centre": [0.5, 1.2, 0.5]}, "centre_y=1.2 is out of range"),
        ({"centre": [0.5, 0.5]}, "centre must be three numbers"),
        ({"extent": [1.5, 0.2, 0.2]}, "extent_x=1.5 is out of range"),
        ({"centre": [0.9, 0.5, 0.5], "extent": [0.5, 0.2, 0.2]}, "reaches outside the anatomy's box"),
        ({"volume_ml": "big"}, "is not a number"),
        ({"healthy": True, "volume_ml": 5}, "healthy=True"),
    ],
)
def test_bad_requests_name_the_attribute_and_its_range(kwargs, match):
    from scripts.errors import Gem3dInputError
    from scripts.sampling.generate_cases import tumour_request

    with pytest.raises(Gem3dInputError, match=match):
        tumour_request(**kwargs)


def test_unspecified_attributes_come_from_the_training_distribution():
    from scripts.data.tumour_attributes import ATTRIBUTES, AttributeTable

    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):
        v = float(rng.uniform(2, 60))
        rows.append(
            {
                "volume_ml": v,
                "surface_mm2": 4.84 * (v * 1000) ** (2 / 3) / 0.8,
                "sphericity": 0.8,
                "centre_x": float(rng.uniform(0.3, 0.7)),
                "centre_y": float(rng.uniform(0.3, 0.7)),
                "centre_z": float(rng.uniform(0.3, 0.7)),
                "extent_x": 0.01 * np.cbrt(v * 1000) / 2,
                "extent_y": 0.01 * np.cbrt(v * 1000) / 2,
                "extent_z": 0.01 * np.cbrt(v * 1000) / 2,
                "count": 1.0,
            }
        )
    rows.append({k: 0.0 for k in ATTRIBUTES})
    table = AttributeTable(rows)
    drawn = table.draw({"volume_ml": 20.0, "centre_x": 0.3}, rng)
    assert drawn["volume_ml"] == 20 and drawn["centre_x"] == 0.3
    assert drawn["sphericity"] == 0.8 and drawn["count"] == 1  # a real case's shape, not a uniform draw
    assert drawn["extent_x"] == pytest.approx(0.01 * np.cbrt(20000) / 2, rel=1e-6)  # rescaled to the volume
    assert any(drawn["centre_y"] == r["centre_y"] for r in rows)
    assert table.draw({"volume_ml": 0.0}, rng)["count"] == 0
    free = table.draw({}, rng)
    assert free in rows  # nothing requested: one training case as it is
    vec = table.encode(drawn)
    assert vec.shape == (len(ATTRIBUTES) + 2,) and vec[-1] == 1 and vec[-2] == 0
    assert table.encode(rows[-1])[-2] == 1  # healthy flag


def test_request_error_ranks_candidates_by_the_requested_attributes():
    from scripts.sampling.generate_cases import candidate_rank, request_error

    request = {"volume_ml": 20.0, "centre_x": 0.3}
    near = {"volume_ml": 22.0, "centre_x": 0.32, "sphericity": 0.1}
    far = {"volume_ml": 5.0, "centre_x": 0.3, "sphericity": 0.9}
    missed = {"volume_ml": 0.0, "centre_x": 0.0, "sphericity": 0.0}
    assert request_error(request, near) < request_error(request, far) < request_error(request, missed)
    assert request_error({}, far) == 0.0  # nothing requested: any candidate will do
    assert request_error({"volume_ml": 0.0}, far) == 5.0 and request_error({"volume_ml": 0.0}, missed) == 0.0
    # best of N: a candidate with a lesion outside the anatomy loses to any candidate without, then the error ranks
    assert candidate_rank(request, far, 0) < candidate_rank(request, near, 1) < candidate_rank(request, missed, 2)
    assert candidate_rank(request, near, 0) < candidate_rank(request, far, 0) and candidate_rank({}, far, 0) == (0, 0.0)


def test_spatial_prior_draws_the_requested_place_in_the_anatomy_box():
    from scripts.data.tumour_attributes import AttributeTable, mean_anatomy_box, tumour_attributes

    label = _brain_with_sphere((1.0, 1.0, 1.0), 6.0, (30, 50, 40))
    box = mean_anatomy_box([label, np.zeros((4, 4, 4))])  # maps without anatomy do not count
    np.testing.assert_allclose(box, [[10 / 80] * 3, [70 / 80] * 3])
    rows = [
        tumour_attributes(_brain_with_sphere((1.0, 1.0, 1.0), r, c), (1.0, 1.0, 1.0), LESIONS)
        for r, c in ((6.0, (30, 50, 40)), (9.0, (45, 30, 50)), (4.0, (25, 40, 30)))
    ]
    table = AttributeTable(rows)
    net = parser_with(TINY_OVERRIDES).get_parsed_content("joint_unet_def")
    net = type(net)(net.unet, net.unet.class_embedding.mlp[0].in_features, table=table, anatomy_box=box)
    want = rows[0]
    vectors = torch.as_tensor(
        np.stack(
            [
                table.encode(want),
                table.encode(tumour_attributes(np.minimum(label, 1), (1.0, 1.0, 1.0), LESIONS)),
                np.zeros(12),
            ]
        )
    )
    blob = net.prior(vectors, (80, 80, 80)).numpy()[:, 0]
    peak = np.unravel_index(blob[0].argmax(), blob[0].shape)
    np.testing.assert_allclose(peak, [30, 50, 40], atol=1.0)  # the sphere's centre, in the anatomy box
    assert blob[0].max() > 0.95 and blob[0][label == 0].max() < 0.05
    assert not blob[1].any() and not blob[2].any()  # healthy or dropped (classifier-free guidance): no blob
    # the weights carry the de-standardisation and the box
    fresh = parser_with(TINY_OVERRIDES).get_parsed_content("joint_unet_def")
    fresh.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh.prior(vectors, (80, 80, 80)), net.prior(vectors, (80, 80, 80)))


def test_attribute_unet_follows_the_vector_and_guidance_one_is_plain_conditioning():
    from scripts.sampling.joint_model import GuidedUNet

    parser = parser_with(TINY_OVERRIDES)
    torch.manual_seed(0)
    net = parser.get_parsed_content("joint_unet_def").eval()
    for p in net.parameters():  # MONAI zero-initialises the residual branches' last convolutions and the output
        if not p.any():
            torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(1, 4, 8, 8, 8), torch.tensor([50])
    a, b = torch.zeros(1, 12), torch.zeros(1, 12)
    a[0, 0], b[0, 0] = 2.0, -2.0
    with torch.no_grad():
        assert not torch.allclose(net(x, t, a), net(x, t, b))
        torch.testing.assert_close(GuidedUNet(net, a, 1.0)(x, t), net(x, t, a))
        guided = GuidedUNet(net, a, 3.0)(x, t)
        cond, uncond = net(x, t, a), net(x, t, torch.zeros_like(a))
        torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), atol=1e-4, rtol=1e-4)


def test_joint_jobs_train_generate_and_hand_off(tmp_path, tiny_demo):
    """The joint autoencoder and UNet configs train on tiny networks; generate_cases writes NIfTI pairs with
    records and a datalist that the enhancement takes; a bad request fails before anything is written."""
    models = tmp_path / "models"
    ov = make_tiny_model(str(models), os.path.dirname(tiny_demo))
    for name in ("joint_autoencoder.pt", "joint_unet.pt", "joint_attributes.json", "joint_latent_scale.json"):
        os.remove(models / name)  # trained below
    ov.update({"run_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")})
    ov["dataset_dir"] = os.path.dirname(tiny_demo)
    fast = {"max_epochs": 1, "samples_per_epoch": 8, "val_interval": 1}
    run_bundle(
        ["inference.json", "train_autoencoder.json", "train_joint_autoencoder.json"],
        {**ov, **fast, "init_weights": None},
    )
    run_bundle(["inference.json", "train_diffusion.json", "joint_unet.json"], {**ov, **fast, "batch_size": 2})
    table = json.load(open(models / "joint_attributes.json"))
    assert len(table["rows"]) == 2 * len(json.load(open(tiny_demo))["training"])  # each volume and its flip
    ae = torch.load(models / "joint_autoencoder.pt", weights_only=True)
    assert ae["encoder.blocks.0.conv.weight"].shape[1] == 1 + 5  # image + one-hot BraTS labels

    out = tmp_path / "cases"
    job = ["inference.json", "generate_cases.json"]
    request = {"num_cases": 2, "tumour_volume_ml": 4.0, "centre": [0.4, 0.6, 0.5], "output_dir": str(out)}
    run_bundle(job, {**ov, **request, "gem3d_handoff": True})
    datalist = json.load(open(out / "datalist.json"))
    assert len(datalist["training"]) == 2 and datalist["labels"]["2"] == "edema"
    for item in datalist["training"]:
        image, label = nib.load(str(out / item["image"])), nib.load(str(out / item["label"]))
        assert image.shape == label.shape == (32, 32, 32)
        np.testing.assert_allclose(image.affine, label.affine)
        np.testing.assert_allclose(np.linalg.norm(image.affine[:3, :3], axis=0), ov_spacing(models), rtol=1e-5)
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3, 4}
    record = json.load(open(sorted(glob.glob(str(out / "records" / "*.json")))[0]))
    assert record["requested"] == {"volume_ml": 4.0, "centre_x": 0.4, "centre_y": 0.6, "centre_z": 0.5}
    assert record["conditioned_on"]["volume_ml"] == 4.0 and "sphericity" in record["achieved"]
    candidates = record["candidates"]  # best of 4: the tiny model misses the request, so all four are drawn
    assert candidates["of"] == candidates["sampled"] == 4 and 0 <= candidates["chosen"] < 4
    assert os.path.isfile(out / "previews" / f"{datalist['training'][0]['id']}.png")
    handoff = json.load(open(out / "gem3d" / "datalist.json"))  # GEM-3D's image for each generated mask
    assert len(handoff["training"]) == 2 and all(
        os.path.isfile(out / "gem3d" / e["image"]) for e in handoff["training"]
    )

    # the generated datalist is a dataset like any other: the enhancement takes it
    run_bundle(
        ["inference.json", "enhance.json"],
        {
            **ov,
            "datalist": str(out / "datalist.json"),
            "repeats": 1,
            "output_dir": str(tmp_path / "enhanced"),
            "augment": "none",
        },
    )
    assert len(json.load(open(tmp_path / "enhanced" / "datalist.json"))["training"]) == 2

    bench = {"output_dir": str(tmp_path / "bench"), "joint_n_volumes": 2, "joint_n_centres": 1, "joint_n_free": 2}
    run_bundle(["inference.json", "benchmark_joint.json"], {**ov, **bench, "joint_n_healthy": 1})
    metrics = json.load(open(tmp_path / "bench" / "metrics.json"))
    assert metrics["control"]["cases"] == 2 and metrics["healthy"]["cases"] == 1
    assert {"fid_a", "fid_c", "fid_s", "grad_anisotropy_x_real"} <= set(metrics["realism"])
    assert "whole_tumour" in metrics["agreement_generated"] and metrics["cost"]["seconds_per_case_mean"] > 0
    assert (
        os.path.isfile(tmp_path / "bench" / "control.png")
        and "volume_rel_error" in open(tmp_path / "bench" / "report.md").read()
    )

    bad = run_bundle(job, {**ov, "sphericity": 1.5, "output_dir": str(tmp_path / "bad")}, check=False)
    assert bad.returncode != 0 and "sphericity=1.5 is out of range" in bad.stdout + bad.stderr
    assert not os.path.exists(tmp_path / "bad" / "datalist.json")
    again = run_bundle(job, {**ov, **request}, check=False)  # never overwrites earlier outputs
    assert again.returncode != 0 and "already exist" in again.stdout + again.stderr


def ov_spacing(models):
    return json.load(open(models / "model_grid.json"))["spacing"]
