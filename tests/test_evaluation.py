"""evaluate.json and benchmark.json end to end on a tiny model (figures are not checked for speed)."""

import json
import os
import shutil

import pytest
import torch
from conftest import run_bundle
from tiny_model import TINY_OVERRIDES, make_tiny_model, parser_with


def test_evaluation_config_end_to_end(tmp_path, tiny_demo):
    ov = make_tiny_model(str(tmp_path / "models"), os.path.dirname(tiny_demo))
    stage1 = parser_with({**TINY_OVERRIDES, "window_temporal": False}).get_parsed_content("window_unet_def")
    torch.save(stage1.state_dict(), tmp_path / "models" / "window.pt")
    shutil.copy(tmp_path / "models" / "volume.pt", tmp_path / "models" / "volume_mask_only.pt")
    out = tmp_path / "eval"
    run_bundle(["inference.json", "evaluate.json"], {**ov, "eval_dir": str(out), "eval_limit": 1})
    metrics = json.load(open(out / "metrics.json"))
    rows = ("gem3d_ic", "gem3d_ic_augmented", "gem3d_ig", "gem3d_true", "stage1_only_true", "no_inpainting_true")
    for row in (*rows, "mask_only_baseline"):
        assert {"fid_a", "fid_c", "fid_s", "max_nearest_training_corr"} <= set(metrics[row]), row
        assert metrics[row]["volumes"] == 2
    assert "ms_ssim" in metrics["gem3d_true"] and "ms_ssim" not in metrics["gem3d_ic"]
    record = json.load(open(next((out / "mask_only_baseline" / "records").glob("*.json"))))
    assert record["informed"] == {"mode": "none"}
    assert "ms_ssim" in metrics["mask_only_baseline"]  # Table 2: the baseline is measured against the real volume
    for row in ("gem3d_ic", "gem3d_true"):  # mask adherence: the segmenter's Dice against the conditioning mask
        assert 0.0 <= metrics[row]["mask_dice_whole_tumour"] <= 1.0, metrics[row]
    assert 0.0 <= metrics["real_test_mask_adherence"]["mask_dice_whole_tumour"] <= 1.0
    assert metrics["gem3d_true"]["diversity_ms_ssim"] is not None
    assert "| gem3d_true |" in (out / "report.md").read_text()
    # through-plane consistency, against the real test set and the autoencoder round trip
    for row in rows:
        assert {"grad_anisotropy_x_real", "adjacent_ssim_minus_real"} <= set(metrics[row]), row
    assert metrics["real_test"]["grad_anisotropy"] > 0 and "grad_anisotropy_x_real" in metrics["autoencoder_round_trip"]
    assert "| gem3d_ic_independent_noise |" in (out / "report.md").read_text()
    # the decoder with cross-slice layers: its own row and its own round-trip reference, differing from the 2D one
    vol, flat = metrics["gem3d_true_volume_decoder"], metrics["gem3d_true_slice_decoder"]
    assert vol["grad_anisotropy"] != flat["grad_anisotropy"]
    assert (
        metrics["volume_decoder_round_trip"]["grad_anisotropy"] != metrics["autoencoder_round_trip"]["grad_anisotropy"]
    )
    assert "cross-slice layers" in (out / "report.md").read_text()
    assert (out / "metrics.png").is_file() and (out / "previews" / "real.png").is_file()

    # over seeds: one evaluation per seed, seed 0 the run above, and the mean and spread of each figure
    seeds_dir = tmp_path / "seeds"
    row = {"gem3d_true": {"informed": {"mode": "true"}}}
    run_bundle(
        ["inference.json", "evaluate.json"],
        {**ov, "eval_dir": str(seeds_dir), "eval_limit": 1, "eval_rows": row, "eval_seeds": [0, 1]},
    )
    per_seed = [json.load(open(seeds_dir / f"seed{s}" / "metrics.json"))["gem3d_true"] for s in (0, 1)]
    assert per_seed[0]["fid_a"] == pytest.approx(metrics["gem3d_true"]["fid_a"], rel=1e-4)
    assert per_seed[0]["psnr"] != per_seed[1]["psnr"]  # another seed draws other volumes
    summary = json.load(open(seeds_dir / "metrics_seeds.json"))
    assert summary["seeds"] == [0, 1]
    for key in ("fid_a", "psnr", "grad_anisotropy_x_real"):
        values = [m[key] for m in per_seed]
        assert summary["gem3d_true"][key]["values"] == pytest.approx(values)
        assert summary["gem3d_true"][key]["mean"] == pytest.approx(sum(values) / 2)
        assert summary["gem3d_true"][key]["sd"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert "| gem3d_true | " in (seeds_dir / "report_seeds.md").read_text()
    assert not (seeds_dir / "metrics.json").exists()

    # on a non-cubic set of another size than the model's (one loading path for real and synthetic volumes), a
    # row whose network weights are missing is skipped and reported, not failed
    from scripts.data.demo_phantom import build_demo_dataset

    other = build_demo_dataset(str(tmp_path / "other"), num_train=2, num_test=1, size=(40, 36, 28), seed=3, previews=0)
    os.remove(tmp_path / "models" / "volume_mask_only.pt")
    only = {
        "gem3d_true": {"informed": {"mode": "true"}},
        "mask_only_baseline": {"informed": {"mode": "none"}, "network": "mask_only"},
    }
    overrides = {**ov, "dataset_dir": str(tmp_path / "other"), "datalist": other, "informed_pool": other}
    run_bundle(["inference.json", "evaluate.json"], {**overrides, "eval_dir": str(tmp_path / "e2"), "eval_rows": only})
    metrics = json.load(open(tmp_path / "e2" / "metrics.json"))
    assert 0.0 < metrics["gem3d_true"]["max_nearest_training_corr"] <= 1.0  # the privacy check compared volumes
    assert metrics["gem3d_true"]["volumes"] == 2 and metrics["gem3d_true"]["fid_c"] >= 0
    assert (
        "mask_only_baseline" not in metrics and "volume_mask_only.pt" in metrics["skipped_rows"]["mask_only_baseline"]
    )
    assert "Row mask_only_baseline skipped" in (tmp_path / "e2" / "report.md").read_text()


def test_benchmark_prints_figures(tmp_path, tiny_demo):
    ov = make_tiny_model(str(tmp_path / "models"), os.path.dirname(tiny_demo))
    proc = run_bundle(
        ["inference.json", "benchmark.json"],
        {
            **ov,
            "bench_sizes": [[32, 32, 16]],
            "bench_settings": [
                {"steps": 2, "eta": 1.0, "batch_waves": True, "solver": "ddim", "precision": "fp32"},
                {"steps": 2, "solver": "dpm++2m", "precision": "bf16"},
            ],
            "bench_output": str(tmp_path / "bench.json"),
            "bench_native_resolution": True,
            "bench_forward_variants": ["fp32", "bf16", "channels_last"],
            # the peer 3D LDM, shrunk: same classes and layout, narrow channels
            "bench_peer_size": [32, 32, 16],
            "peer_autoencoder_def#channels": [8, 8, 8],
            "peer_autoencoder_def#norm_num_groups": 4,
            "peer_unet_def#channels": [8, 8, 8],
            "peer_unet_def#norm_num_groups": 4,
            "peer_unet_def#num_head_channels": [0, 4, 4],
        },
    )
    result = json.load(open(tmp_path / "bench.json"))
    rows = result["rows"]
    assert result["forwards"]["fp32"]["relative_error_vs_fp32"] == 0.0
    assert result["forwards"]["bf16"]["relative_error_vs_fp32"] < 0.05
    assert result["forwards"]["channels_last"]["ms_per_forward"] > 0
    assert rows[0]["window_forwards"] > 0 and rows[0]["gflops_per_window_forward"] > 0
    assert (rows[0]["solver"], rows[0]["precision"]) == ("ddim", "fp32")
    assert (rows[1]["solver"], rows[1]["precision"], rows[1]["steps"]) == ("dpm++2m", "bf16", 2)
    assert rows[1]["window_forwards"] == rows[0]["window_forwards"]  # one forward per step and window
    assert "seconds_per_volume=" in proc.stdout
    peer = result["peer_3d_ldm"]
    assert peer["output_size"] == [32, 32, 16] and peer["latent"] == [4, 8, 8, 4] and peer["steps"] == 50
    projected = 50 * peer["unet_forward_s"] + peer["decode_s"]  # from figures rounded to 0.01 s
    assert abs(peer["projected_s_per_volume"] - projected) <= 0.4 and peer["unet_tflops_per_forward"] >= 0
    assert all(r["peer_ratio"] > 0 for r in rows) and "x faster" in proc.stdout
    assert set(result["cpu"]) >= {"model", "avx2", "avx512_bf16", "amx"} and "CPU: " in proc.stdout


def test_evaluation_seeds_must_differ():
    from scripts.errors import Gem3dInputError
    from scripts.evaluate import evaluate

    for bad in ([1, 1], []):
        with pytest.raises(Gem3dInputError, match="different integers"):
            evaluate(None, "unused.json", "unused", seed=bad)
