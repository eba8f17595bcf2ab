"""The 3D latent diffusion backend (MedLoRD-style): patch-wise decoding, the ControlNet adapter, and its configs
end to end on tiny networks through the same main job, evaluation and enhancement as GEM-3D."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from tiny_model import TINY_OVERRIDES, make_tiny_model, parser_with


def test_controlnet_starts_as_a_no_op_and_leaves_the_unet_untouched():
    from scripts.networks.controlled_unet import ControlledUNet

    parser = parser_with(TINY_OVERRIDES)
    torch.manual_seed(0)
    unet = parser.get_parsed_content("medlord_unet_def")
    for p in unet.out.parameters():  # MONAI zero-initialises the output convolution: stand in for a trained UNet
        torch.nn.init.normal_(p, std=0.05)
    net = ControlledUNet(unet, parser.get_parsed_content("medlord_controlnet_def"))
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    x, t = torch.randn(2, 4, 8, 8, 8), torch.tensor([10, 200])
    mask = torch.zeros(2, 5, 32, 32, 32)
    mask[:, 1, 8:24, 8:24, 8:24] = 1
    with torch.no_grad():
        np.testing.assert_allclose(net(x, t, mask).numpy(), unet(x, t).numpy(), atol=1e-5)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net(x, t, mask).pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert not any(p.requires_grad for p in unet.parameters())
    with torch.no_grad():  # after a step the control acts
        assert not np.allclose(net(x, t, mask).numpy(), unet(x, t).numpy(), atol=1e-5)


def test_medlord_configs_train_synthesize_and_evaluate(tmp_path, tiny_demo):
    """Each training config on tiny networks, then the main job, enhancement and an evaluation row by the switch."""
    models = tmp_path / "models"
    ov = make_tiny_model(str(models), os.path.dirname(tiny_demo))
    for name in ("medlord_autoencoder", "medlord_unet", "medlord_controlnet"):
        os.remove(models / f"{name}.pt")  # trained below
    ov.update({"run_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")})
    ae = ["inference.json", "train_autoencoder.json", "medlord_autoencoder.json"]
    run_bundle(ae, {**ov, "max_epochs": 1, "samples_per_epoch": 4, "val_interval": 1, "ae_patch": [16, 16, 16]})
    fast = {"max_epochs": 1, "samples_per_epoch": 4, "val_interval": 1, "batch_size": 2}
    diffusion = ["inference.json", "train_diffusion.json", "medlord_unet.json"]
    run_bundle(diffusion, {**ov, **fast})
    run_bundle([*diffusion, "medlord_controlnet.json"], {**ov, **fast})
    for name in ("medlord_autoencoder", "medlord_unet", "medlord_controlnet"):
        assert os.path.isfile(models / f"{name}.pt"), name
    assert json.load(open(models / "medlord_latent_scale.json"))["scale"] > 0
    control = torch.load(models / "medlord_controlnet.pt", weights_only=True)
    assert not any(k.startswith("unet.") for k in control) and "controlnet_mid_block.conv.weight" in control

    out = tmp_path / "synth"
    noise = {"scanner_noise_fallback": 0.02}  # the default "auto" setting and fraction 0.7
    run_bundle(["inference.json"], {**ov, **noise, "backend": "medlord", "output_dir": str(out), "limit": 1})
    record = json.load(open(next((out / "records").glob("*.json"))))
    assert record["backend"] == "medlord" and record["sampler"]["steps"] == 3
    # no informed slice: the scanner noise takes its share of the training scans' level
    assert record["scanner_noise"]["sigma"] == pytest.approx(0.014) and "training" in record["scanner_noise"]["source"]
    image = nib.load(str(next((out / "images").glob("*.nii.gz"))))
    item = json.load(open(tiny_demo))["test"][0]
    mask = nib.load(os.path.join(os.path.dirname(tiny_demo), item["label"]))
    assert image.shape == mask.shape and np.isfinite(np.asarray(image.dataobj)).all()
    np.testing.assert_allclose(image.affine, mask.affine, atol=1e-5)

    rows = {"gem3d_true": {"informed": {"mode": "true"}}, "medlord_3d_ldm": {"backend": "medlord"}}
    ev = {"eval_dir": str(tmp_path / "eval"), "eval_rows": rows, "eval_repeats": 1, "eval_limit": 1}
    run_bundle(["inference.json", "evaluate.json"], {**ov, **ev})
    metrics = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert {"fid_a", "grad_anisotropy_x_real", "ms_ssim"} <= set(metrics["medlord_3d_ldm"])
    assert "medlord_3d_ldm" in open(tmp_path / "eval" / "report.md").read()
