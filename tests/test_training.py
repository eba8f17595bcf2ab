"""Training configs end to end on a tiny demo set; stage-2 freezing; resumption; DDP on CPU; bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, ROOT, run_bundle
from tiny_model import TINY_OVERRIDES, make_tiny_model, parser_with

DIFF = ["inference.json", "train_diffusion.json"]
FAST = {"samples_per_epoch": 4, "val_samples": 2, "batch_size": 2, "val_interval": 1}


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("train")
    overrides = make_tiny_model(str(root / "models"), os.path.dirname(tiny_demo))
    overrides.update({"run_dir": str(root / "runs"), "cache_dir": str(root / "cache")})
    return root, overrides


def _trainer_iteration(stage_dir):
    ckpt = torch.load(os.path.join(stage_dir, "checkpoint_final.pt"), map_location="cpu", weights_only=False)
    state = ckpt["trainer"]  # ignite saves the iteration and the epoch length
    return state["iteration"], state["iteration"] // state["epoch_length"]


def test_autoencoder_trains_and_resumes(stage_dirs):
    root, ov = stage_dirs
    ov = {**ov, "model_dir": str(root / "ae_models"), "batch_size": 16, "limit_volumes": 2}
    run_bundle(["inference.json", "train_autoencoder.json"], {**ov, "max_epochs": 1, "val_interval": 1})
    it1, ep1 = _trainer_iteration(root / "runs" / "autoencoder")
    assert ep1 == 1 and it1 > 0
    assert os.path.isfile(root / "ae_models" / "autoencoder.pt")
    assert os.path.isfile(root / "runs" / "autoencoder" / "autoencoder_curve.png")
    proc = run_bundle(["inference.json", "train_autoencoder.json"], {**ov, "max_epochs": 2, "val_interval": 1})
    it2, ep2 = _trainer_iteration(root / "runs" / "autoencoder")
    assert "resuming from" in proc.stdout and ep2 == 2 and it2 == 2 * it1


def test_window_volume_informed_stages_run(stage_dirs):
    root, ov = stage_dirs
    run_bundle([*DIFF, "train_window.json"], {**ov, **FAST, "max_epochs": 1})
    assert os.path.isfile(os.path.join(ov["model_dir"], "window.pt"))
    assert json.load(open(os.path.join(ov["model_dir"], "latent_scale.json")))["scale"] > 0
    run_bundle([*DIFF, "train_window.json", "train_volume.json"], {**ov, **FAST, "max_epochs": 1})
    vol = torch.load(os.path.join(ov["model_dir"], "volume.pt"), weights_only=True)
    win = torch.load(os.path.join(ov["model_dir"], "window.pt"), weights_only=True)
    assert any(k.startswith("temporal.") for k in vol)
    for k, v in win.items():  # stage 2 trained only the new layers: the EMA copy of frozen weights is unchanged
        assert torch.equal(vol[k], v), k
    run_bundle([*DIFF, "train_informed.json"], {**ov, **FAST, "max_epochs": 1, "batch_size": 8})
    assert os.path.isfile(os.path.join(ov["model_dir"], "informed.pt"))


def test_mask_only_baseline_trains_both_stages_without_informed_slices(stage_dirs):
    root, ov = stage_dirs
    models = root / "baseline_models"
    models.mkdir()
    shutil.copy(os.path.join(ov["model_dir"], "autoencoder.pt"), models)
    ov = {**ov, "model_dir": str(models)}
    run_bundle([*DIFF, "train_window.json", "baseline_mask_only.json"], {**ov, **FAST, "max_epochs": 1})
    stage1 = root / "runs" / "window_mask_only" / "window_mask_only.pt"
    assert stage1.is_file() and not os.path.exists(os.path.join(ov["model_dir"], "window.pt"))
    stage2 = [*DIFF, "train_window.json", "train_volume.json", "baseline_mask_only.json"]
    run_bundle(stage2, {**ov, **FAST, "max_epochs": 1})
    vol = torch.load(os.path.join(ov["model_dir"], "volume_mask_only.pt"), weights_only=True)
    assert any(k.startswith("temporal.") for k in vol)
    for k, v in torch.load(stage1, weights_only=True).items():
        assert torch.equal(vol[k], v), k

    from scripts.data.windows import WindowDataset

    cache = {"scale": 1.0, "cases": [{"id": "a", "latent": torch.randn(20, 4, 4, 4), "mask": torch.rand(20, 5, 4, 4)}]}
    item = WindowDataset(cache, 16, 4, seed=0, mask_only=True)[0]
    assert torch.count_nonzero(item["condition"][5:]) == 0  # informed latent and offsets are zero
    assert torch.count_nonzero(WindowDataset(cache, 16, 4, seed=0)[0]["condition"][5:]) > 0


def test_stage2_freezes_stage1_and_starts_at_its_function(tmp_path):
    parser = parser_with({**TINY_OVERRIDES, "window_temporal": False})
    stage1 = parser.get_parsed_content("window_unet_def")
    for p in stage1.unet.out.parameters():  # MONAI zero-initialises the output layer; a trained one is not zero
        torch.nn.init.normal_(p, std=0.05)
    torch.save(stage1.state_dict(), tmp_path / "window.pt")
    from scripts.engines.stages import volume_network

    stage2 = volume_network(
        parser_with({**TINY_OVERRIDES, "window_temporal": True}).get_parsed_content("window_unet_def"),
        str(tmp_path / "window.pt"),
        "cpu",
    )
    x, t = torch.randn(2, 14, 8, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        # identity / zero initialisation: the same function; oneDNN may pick another convolution kernel for the
        # (batch x slices) layout of stage 2 on AVX-512/AMX CPUs, so equality holds to float rounding, not bitwise
        torch.testing.assert_close(stage1(x, t), stage2(x, t), rtol=1e-5, atol=1e-6)
    before = {k: v.clone() for k, v in stage2.unet.state_dict().items()}
    opt = torch.optim.AdamW([p for p in stage2.parameters() if p.requires_grad], lr=1e-2)
    stage2(x, t).pow(2).mean().backward()
    opt.step()
    assert all(p.grad is None for p in stage2.unet.parameters())  # no gradient is even computed
    for k, v in stage2.unet.state_dict().items():
        assert torch.equal(before[k], v), k
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage2.temporal.parameters())


def test_through_plane_loss_costs_flicker_not_shared_error():
    from scripts.engines.losses import ThroughPlaneLoss

    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4, 16, 8, 8, generator=g)
    shared = target + 0.3 * torch.randn(2, 4, 1, 8, 8, generator=g)  # the same error on every slice of a window
    flicker = target + 0.3 * torch.randn(2, 4, 16, 8, 8, generator=g)  # an error of its own on every slice
    plain = torch.nn.MSELoss()
    for pred in (shared, flicker):
        assert torch.equal(ThroughPlaneLoss(0.0)(pred, target), plain(pred, target))
    loss = ThroughPlaneLoss(2.0)
    torch.testing.assert_close(loss(shared, target), plain(shared, target))  # no slice-to-slice change: MSE alone
    by_hand = (
        plain(flicker, target) + 2.0 * ((flicker - target)[:, :, 1:] - (flicker - target)[:, :, :-1]).pow(2).mean()
    )
    torch.testing.assert_close(loss(flicker, target), by_hand)
    assert loss(flicker, target) > 4.0 * plain(flicker, target)  # 1 + 2 x 2 var for independent errors
    with pytest.raises(ValueError, match="windows"):
        loss(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=">= 0"):
        ThroughPlaneLoss(-1.0)


def test_training_noise_can_follow_the_samplers_slice_correlation():
    from scripts.engines.prepare import ConditionedVPredictionBatch

    parser = parser_with(TINY_OVERRIDES)
    scheduler = parser.get_parsed_content("noise_scheduler")
    images = torch.zeros(64, 2, 16, 8, 8)
    torch.manual_seed(0)
    for rho in (0.0, 0.7):
        prep = ConditionedVPredictionBatch(scheduler, 1000, "condition", noise_correlation=rho)
        noise = prep.get_noise(images)
        assert noise.shape == images.shape
        a, b = noise[:, :, :-1].flatten(), noise[:, :, 1:].flatten()
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item() - rho) < 0.02
        assert abs(noise.std().item() - 1.0) < 0.02  # every slice stays N(0, I)
    with pytest.raises(ValueError, match="windows"):
        ConditionedVPredictionBatch(scheduler, 1000, "condition", noise_correlation=0.7).get_noise(
            torch.zeros(2, 4, 8, 8)
        )


def test_stage2_with_through_plane_loss_and_correlated_noise_trains_only_its_layers(stage_dirs, tmp_path):
    root, ov = stage_dirs
    stage1 = os.path.join(ov["model_dir"], "window.pt")
    if not os.path.isfile(stage1):
        run_bundle([*DIFF, "train_window.json"], {**ov, **FAST, "max_epochs": 1})
    models = tmp_path / "models"
    shutil.copytree(ov["model_dir"], models)
    ov = {**ov, "model_dir": str(models), "stage1_weights": stage1, "stage": "volume_tp"}
    switches = {"through_plane_weight": 1.0, "train_noise_correlation": 0.7}
    run_bundle([*DIFF, "train_window.json", "train_volume.json"], {**ov, **FAST, **switches, "max_epochs": 1})
    vol = torch.load(models / "volume_tp.pt", weights_only=True)
    win = torch.load(stage1, weights_only=True)
    for k, v in win.items():
        assert torch.equal(vol[k], v), k
    assert any(v.abs().sum() > 0 for k, v in vol.items() if k.startswith("temporal.") and "out_proj" in k)
    configs = [*DIFF, "train_window.json", "train_volume.json"]
    parser = parser_with({**ov, **switches}, configs)
    assert parser.get_parsed_content("train#loss").weight == 1.0  # the run's loss and noise are the switches'
    assert parser.get_parsed_content("prepare_batch").noise_correlation == 0.7
    assert parser_with(ov, configs).get_parsed_content("train#loss").weight == 0.0  # default: plain MSE


def test_multi_gpu_override_runs_two_cpu_processes(stage_dirs, tmp_path):
    root, ov = stage_dirs
    ov = {**ov, **FAST, "max_epochs": 1, "run_dir": str(tmp_path / "runs"), "samples_per_epoch": 8}
    files = [os.path.join(CONFIGS, c) for c in [*DIFF, "train_window.json", "multi_gpu_train.json"]]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(files),
    ]
    for k, v in ov.items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    it, _ = _trainer_iteration(tmp_path / "runs" / "window")
    assert it == 2  # 8 samples, 2 ranks, batch 2: each rank runs 2 iterations


def test_bad_training_input_fails_before_long_work(stage_dirs, tmp_path):
    _, ov = stage_dirs
    proc = run_bundle([*DIFF, "train_window.json"], {**ov, "dataset_dir": str(tmp_path / "nothing")}, check=False)
    assert proc.returncode != 0 and "datalist not found" in proc.stdout + proc.stderr
    proc = run_bundle([*DIFF, "train_window.json"], {**ov, "window": 64}, check=False)
    assert proc.returncode != 0 and "fewer slices than the window" in proc.stdout + proc.stderr
    bad = tmp_path / "models"
    shutil.copytree(ov["model_dir"], bad)
    torch.save({"nonsense": torch.zeros(1)}, bad / "autoencoder.pt")
    proc = run_bundle(
        [*DIFF, "train_window.json"], {**ov, "model_dir": str(bad), "cache_dir": str(tmp_path / "c")}, check=False
    )
    assert proc.returncode != 0 and "do not match the network" in proc.stdout + proc.stderr


def test_decoder_finetuning_keeps_every_latent(stage_dirs, tmp_path):
    """finetune_decoder.json trains the decoder only: encoder weights (hence latents and the diffusion stages
    trained on them) stay bit-identical; the decoder changes; the result still loads into the declared network."""
    root, ov = stage_dirs
    models = tmp_path / "models"
    shutil.copytree(ov["model_dir"], models)
    before = torch.load(models / "autoencoder.pt", weights_only=True)
    shutil.copy(models / "autoencoder.pt", tmp_path / "before.pt")
    run_bundle(
        ["inference.json", "train_autoencoder.json", "finetune_decoder.json"],
        {**ov, "model_dir": str(models), "run_dir": str(tmp_path / "runs"), "max_epochs": 1, "limit_volumes": 2},
    )
    after = torch.load(models / "autoencoder.pt", weights_only=True)
    assert before.keys() == after.keys()
    frozen = [k for k in before if not k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert os.path.isfile(tmp_path / "runs" / "autoencoder_decoder" / "autoencoder_curve.png")

    from scripts.data.latent_cache import encoder_md5

    # the latent cache is keyed by the encoder side only: kept after decoder fine-tuning, rebuilt for a new encoder
    assert encoder_md5(str(tmp_path / "before.pt")) == encoder_md5(str(models / "autoencoder.pt"))
    after[frozen[0]] = after[frozen[0]] + 1.0
    torch.save(after, tmp_path / "new_encoder.pt")
    assert encoder_md5(str(tmp_path / "new_encoder.pt")) != encoder_md5(str(models / "autoencoder.pt"))


def test_volume_decoder_trains_only_its_cross_slice_layers(stage_dirs, tmp_path):
    """train_volume_decoder.json: the 2D autoencoder inside stays bit-identical (encoder and decoder), the
    cross-slice layers leave zero, and the file loads into the declared network the synthesizer uses."""
    root, ov = stage_dirs
    out = tmp_path / "models"
    run_bundle(
        ["inference.json", "train_autoencoder.json", "train_volume_decoder.json"],
        {
            **ov,
            "run_dir": str(tmp_path / "runs"),
            "validate#checkpoint#save_dir": str(out),
            "max_epochs": 1,
            "limit_volumes": 2,
            "val_interval": 1,
            "stack_depth": 16,  # >= the 3D SSIM window (11)
            "stacks_per_volume": 1,
        },
    )
    trained = torch.load(out / "volume_decoder.pt", weights_only=True)
    ae = torch.load(os.path.join(ov["model_dir"], "autoencoder.pt"), weights_only=True)
    assert {k[len("autoencoder.") :] for k in trained if k.startswith("autoencoder.")} == set(ae)
    assert all(torch.equal(trained["autoencoder." + k], v) for k, v in ae.items())
    temporal = [k for k in trained if k.startswith("temporal.") and k.endswith("conv.weight")]
    assert temporal and any(trained[k].abs().sum() > 0 for k in temporal)
    net = parser_with(ov).get_parsed_content("volume_decoder_def")
    net.load_state_dict(trained)
    assert os.path.isfile(tmp_path / "runs" / "volume_decoder" / "volume_decoder_curve.png")


def test_segmenter_and_downstream_study(stage_dirs, tmp_path):
    """train_segmenter.json writes weights and per-region test scores; downstream.json trains one segmenter per
    (row, seed) on real and on a gem3d-enhanced set (made by enhance.json) and writes the summary."""
    root, ov = stage_dirs
    seg = {"max_epochs": 1, "samples_per_epoch": 2, "val_interval": 1, "limit_volumes": 2}
    models = tmp_path / "models"
    run_bundle(
        ["inference.json", "train_segmenter.json"],
        {**ov, **seg, "run_dir": str(tmp_path / "runs"), "seg_weights_dir": str(models)},
    )
    assert os.path.isfile(models / "segmenter.pt")
    scores = json.load(open(tmp_path / "runs" / "segmenter" / "test_scores.json"))
    assert len(scores["cases"]) == 2 and 0 <= scores["mean"]["whole_tumour"]["dice"] <= 1
    enhanced = tmp_path / "enhanced"
    run_bundle(["inference.json", "enhance.json"], {**ov, "output_dir": str(enhanced), "repeats": 2, "limit": 2})
    out = tmp_path / "downstream"
    other = json.load(open(enhanced / "datalist.json"))  # another enhanced set (a baseline's): one volume of it
    other["training"] = [
        {**e, "image": str(enhanced / e["image"]), "label": str(enhanced / e["label"])} for e in other["training"][:1]
    ]
    json.dump(other, open(tmp_path / "other.json", "w"))
    rows = {
        "real": {"real": True},
        "gem3d_1x": {"synthetic": 1},
        "real_plus_gem3d_2x": {"real": True, "synthetic": 2},
        "baseline_1x": {"synthetic": 1, "enhanced": str(tmp_path / "other.json")},
    }
    run_bundle(
        ["inference.json", "train_segmenter.json", "downstream.json"],
        {
            **ov,
            **seg,
            "limit_volumes": 4,
            "enhanced_datalist": str(enhanced / "datalist.json"),
            "downstream_dir": str(out),
            "downstream_rows": rows,
            "downstream_seeds": [0],
        },
    )
    result = json.load(open(out / "downstream.json"))
    assert set(result["summary"]) == set(rows) and result["summary"]["real"]["whole_tumour"]["seeds"] == 1
    assert len(json.load(open(out / "datalist_gem3d_1x.json"))["training"]) == 2  # 1x: the first resampling only
    assert len(json.load(open(out / "datalist_real_plus_gem3d_2x.json"))["training"]) == 4
    assert len(json.load(open(out / "datalist_baseline_1x.json"))["training"]) == 1
    assert (out / "downstream.png").is_file() and "| real_plus_gem3d_2x |" in (out / "downstream.md").read_text()


def test_downstream_row_with_a_missing_enhanced_set_is_named(tmp_path):
    from scripts.downstream import row_sources
    from scripts.errors import Gem3dInputError

    rows = {"baseline": {"synthetic": 1, "enhanced": str(tmp_path / "missing.json")}}
    with pytest.raises(Gem3dInputError, match="row 'baseline'.*missing.json"):
        row_sources(rows, str(tmp_path / "real.json"), str(tmp_path / "gem3d.json"), str(tmp_path))
    with pytest.raises(Gem3dInputError, match="trains on nothing"):
        row_sources({"empty": {}}, str(tmp_path / "real.json"), str(tmp_path / "gem3d.json"), str(tmp_path))
