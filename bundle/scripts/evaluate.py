"""The evaluation job: synthesize the real test masks under several settings and measure them.

Rows (same data, same sampler): GEM-3D with IC (also with 3D mask augmentation), IG and the true informed slice
(paper Table 2 protocol), the ablations stage 1 only (no volumetric tuning), no overlap inpainting and independent
starting noise per slice (the paper's sampler noise), and the Make-A-Volume-style baseline (mask only, no informed
slice; ``baseline_mask_only.json``, same training budget) and the 3D latent diffusion backend (``backend``
``medlord``).
Metrics: FID-A/C/S against the real test set (floor: real training vs real test), through-plane consistency
(gradient anisotropy and adjacent-slice SSIM, against the real test set and the autoencoder round trip), fidelity
to the real volume for the true-informed rows and the baseline, mask adherence (a segmenter trained on real data,
Dice against the conditioning mask), diversity (MS-SSIM between two samples of a mask) and privacy (highest
correlation with any training volume). Writes metrics.json, report.md and plots; over several seeds (``seed`` a
list) each seed's in seed<s>/ and the mean and spread of every figure in metrics_seeds.json and report_seeds.md.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from .data.slices import load_volumes
from .data.volume_dataset import load_sources
from .errors import Gem3dInputError
from .io import new_figure, save_figure, save_json, save_text
from .metrics.consistency import consistency, relative_to
from .metrics.features import EncoderFeatures
from .metrics.fid import features_per_plane, fid_per_plane
from .metrics.fidelity import nearest_training_similarity, pairwise_ms_ssim, slice_fidelity
from .metrics.segmentation import score_volumes
from .networks.weights import load_weights
from .preview import triplanar_figure
from .sampling.enhance import run_datalist

logger = logging.getLogger(__name__)

DEFAULT_ROWS = {
    "gem3d_ic": {"informed": {"mode": "ic"}},
    "gem3d_ic_augmented": {"informed": {"mode": "ic"}, "augment": "mri"},
    "gem3d_ig": {"informed": {"mode": "ig"}},
    "gem3d_true": {"informed": {"mode": "true"}},
    "stage1_only_true": {"informed": {"mode": "true"}, "network": "stage1"},
    # stage 2 reward fine-tuned (finetune_reward.json), with the default sampler and with the rollouts' own
    "reward_tuned_true": {"informed": {"mode": "true"}, "network": "reward"},
    "reward_tuned_true_ddim_eta1": {"informed": {"mode": "true"}, "network": "reward", "solver": "ddim", "eta": 1.0},
    "gem3d_true_ddim_eta1": {"informed": {"mode": "true"}, "solver": "ddim", "eta": 1.0},
    "no_inpainting_true": {"informed": {"mode": "true"}, "inpaint": False},
    # no scanner noise and no lesion guidance (Make-A-Volume has neither): its fidelity is compared with the
    # true-slice rows, which get neither
    "mask_only_baseline": {
        "informed": {"mode": "none"},
        "network": "mask_only",
        "scanner_noise": "none",
        "lesion_guidance": 1,
    },
    # the paper's sampler: independent starting noise per slice, no scanner noise, no lesion guidance
    "gem3d_ic_independent_noise": {
        "informed": {"mode": "ic"},
        "noise_correlation": 0.0,
        "scanner_noise": "none",
        "lesion_guidance": 1,
    },
    "gem3d_true_independent_noise": {"informed": {"mode": "true"}, "noise_correlation": 0.0},
    "stage1_only_true_independent_noise": {"informed": {"mode": "true"}, "network": "stage1", "noise_correlation": 0.0},
    # the decoder with cross-slice layers (Video-LDM style) against the 2D decoder slice by slice
    "gem3d_true_volume_decoder": {"informed": {"mode": "true"}, "decoder": "volume"},
    "gem3d_true_slice_decoder": {"informed": {"mode": "true"}, "decoder": "slice"},
    # the informed scan's whole noise level given back to the decoded volume, as Rician noise when they were measured
    # (scanner_noise.py; the default gives 0.7 of it as Gaussian noise, and none with the true slice)
    "gem3d_true_scanner_noise": {
        "informed": {"mode": "true"},
        "scanner_noise": "informed",
        "scanner_noise_fraction": 1,
        "scanner_noise_kind": "rician",
    },
    "gem3d_ic_scanner_noise": {
        "informed": {"mode": "ic"},
        "scanner_noise": "informed",
        "scanner_noise_fraction": 1,
        "scanner_noise_kind": "rician",
    },
    "gem3d_true_volume_decoder_scanner_noise": {
        "informed": {"mode": "true"},
        "decoder": "volume",
        "noise_correlation": 0.3,
        "scanner_noise": "informed",
        "scanner_noise_fraction": 1,
        "scanner_noise_kind": "rician",
    },
    # the default until 0.15.0: starting noise correlated 0.7 between slices, no scanner noise
    "gem3d_ic_until_0_15": {
        "informed": {"mode": "ic"},
        "noise_correlation": 0.7,
        "scanner_noise": "none",
        "lesion_guidance": 1,
    },
    "gem3d_true_until_0_15": {"informed": {"mode": "true"}, "noise_correlation": 0.7, "scanner_noise": "none"},
    # the default of 0.16.0: Rician (magnitude) scanner noise, no lesion guidance
    "gem3d_ic_0_16": {"informed": {"mode": "ic"}, "scanner_noise_kind": "rician", "lesion_guidance": 1},
    # lesion guidance (sampling/lesion_guidance.py): the default command without it, and the true slice with it
    "gem3d_ic_plain": {"informed": {"mode": "ic"}, "lesion_guidance": 1},
    "gem3d_true_lesion_guidance_2": {"informed": {"mode": "true"}, "lesion_guidance": 2},
    # co-denoising with shifting windows (sampling/blend.py) against the paper's propagation
    "gem3d_true_blend": {"informed": {"mode": "true"}, "scheme": "blend"},
    "gem3d_ic_blend": {"informed": {"mode": "ic"}, "scheme": "blend"},
    # the whole-volume 3D latent diffusion backend (MedLoRD-style, mask through a ControlNet; Table 2's "3D LDM")
    "medlord_3d_ldm": {"backend": "medlord"},
}


def _load_synth(folder: str, cfg: dict) -> tuple[list[dict], list[dict]]:
    """Synthetic cases in model space, through the same loading path as the real ones (intensities kept: gem3d
    writes model intensities)."""
    datalist = os.path.join(folder, "datalist.json")
    with open(datalist) as f:
        entries = json.load(f)["training"]
    cases = load_volumes(datalist, "training", cfg["grid"], cfg["num_labels"], cfg["modality"], normalise=False)
    return cases, entries


def synth_records(folder: str, entries: list[dict]) -> list[dict]:
    """The generation record (records/<name>.json) of each synthetic case ``entries`` lists in ``folder``."""
    records = []
    for e in entries:
        with open(os.path.join(folder, "records", os.path.basename(e["image"])[:-7] + ".json")) as f:
            records.append(json.load(f))
    return records


def evaluate(
    synth,
    datalist: str,
    output_dir: str,
    networks: dict | None = None,
    rows=None,
    repeats: int = 2,
    limit=None,
    seed: int | list = 0,
    segmenter=None,
    segmenter_file: str | None = None,
    backends: dict | None = None,
    references: dict | None = None,
) -> dict:
    """``seed`` a list of several seeds: every row once per seed, into output_dir/seed<s>, against references
    computed once, then each figure's mean and standard deviation over the seeds (``_summarise_seeds``).
    ``references`` (from ``load_references``) skips recomputing what rows are measured against.
    ``networks`` names other window networks that rows can use (``{"stage1": {"network", "file"}}``); a row whose
    weights file is missing is skipped with a message (and listed in the metrics), not failed.
    ``segmenter`` (+ ``segmenter_file``, from ``train_segmenter.json``) adds mask adherence: the segmenter
    trained on real data segments each synthetic volume; Dice/HD95 against the mask it was generated from."""
    seeds = [int(x) for x in seed] if isinstance(seed, (list, tuple)) else [int(seed)]
    if not seeds or len(seeds) != len(set(seeds)):
        raise Gem3dInputError(f"evaluation seeds must be one or more different integers, got {seed}")
    if len(seeds) > 1:
        refs = references or load_references(synth, datalist, limit, segmenter, segmenter_file)
        per_seed = {
            x: evaluate(
                synth,
                datalist,
                os.path.join(output_dir, f"seed{x}"),
                networks,
                rows,
                repeats,
                limit,
                x,
                segmenter,
                segmenter_file,
                backends,
                refs,
            )
            for x in seeds
        }
        return _summarise_seeds(per_seed, output_dir, list(synth.cfg["labels"].regions))
    seed = seeds[0]
    start = time.time()
    rows = rows or DEFAULT_ROWS
    networks = networks or {}
    backends = backends or {}
    unknown_backends = sorted({r["backend"] for r in rows.values() if "backend" in r} - set(backends))
    if unknown_backends:
        raise Gem3dInputError(f"evaluation rows name unknown backends {unknown_backends}; known: {sorted(backends)}")
    unknown = sorted({r["network"] for r in rows.values() if "network" in r} - set(networks))
    if unknown:
        raise Gem3dInputError(f"evaluation rows name unknown networks {unknown}; known: {sorted(networks)}")
    cfg, labels, size = synth.cfg, synth.cfg["labels"], synth.cfg["grid"].size
    refs = references or load_references(synth, datalist, limit, segmenter, segmenter_file)
    train, test, extractor, real_test_f, judge = (
        refs[k] for k in ("train", "test", "extractor", "real_test_f", "judge")
    )
    test_by_id = {c["id"]: c for c in test}
    real_consistency = refs["results"]["real_test"]
    results = {k: dict(v) for k, v in refs["results"].items()}
    previews, skipped = {}, {}
    for name, row in rows.items():
        folder = os.path.join(output_dir, name)
        if not os.path.isfile(os.path.join(folder, "datalist.json")):  # rows already generated are only measured
            overrides = {k: v for k, v in row.items() if k not in ("network", "backend")}
            network = None
            if "network" in row:
                alt = networks[row["network"]]
                if not os.path.isfile(alt["file"]):
                    skipped[name] = f"no weights at {alt['file']}"
                    logger.warning(f"row {name} skipped: {skipped[name]}")
                    continue
                network = load_weights(
                    alt["network"], alt["file"], f"{row['network']} window model", synth.model.device
                )
                overrides["window_weights"] = row["network"]  # recorded with every volume of the row
            row_synth = backends[row["backend"]] if "backend" in row else synth
            with row_synth.variant(overrides, network):
                run_datalist(
                    row_synth, datalist, "test", folder, repeats=repeats, seed=seed, overwrite=True, limit=limit
                )
        cases, entries = _load_synth(folder, cfg)
        vols = [c["image"] for c in cases]
        metrics = fid_per_plane(real_test_f, features_per_plane(vols, extractor, size))
        metrics.update(consistency(vols, _anatomy(cases, labels)))
        metrics.update(relative_to(real_consistency, metrics))
        fidelity = [
            slice_fidelity(v, test_by_id[e["source"]]["image"], _anatomy([test_by_id[e["source"]]], labels)[0])
            for v, e in zip(vols, entries)
            # Table 2 protocol: the true informed slice, or a model that takes none (the mask-only baseline)
            if _informed_mode(row, backends.get(row.get("backend"), synth)) in ("true", "none")
            and not row.get("augment")
        ]
        for k in ("ms_ssim", "ssim", "psnr"):
            if fidelity:
                metrics[k] = float(np.mean([f[k] for f in fidelity]))
        groups: dict[str, list] = {}
        for v, e in zip(vols, entries):
            groups.setdefault(e["source"], []).append(v)
        div = [pairwise_ms_ssim(g) for g in groups.values() if len(g) > 1]
        metrics["diversity_ms_ssim"] = float(np.mean(div)) if div else None
        near = [nearest_training_similarity(v, [c["image"] for c in train])["nearest_training_corr"] for v in vols]
        metrics["max_nearest_training_corr"] = float(np.max(near))
        metrics["volumes"] = len(vols)
        records = synth_records(folder, entries)
        metrics["seconds_per_volume"] = round(float(np.mean([r["seconds"] for r in records])), 2)
        if judge is not None:
            sources = [[os.path.join(folder, "datalist.json"), "training"]]
            metrics.update(_adherence(judge, sources, cfg, synth.model.device))
        results[name] = metrics
        previews[name] = (vols[0], cases[0]["label"])
        logger.info("%s %s", name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
    real_near = [
        nearest_training_similarity(c["image"], [t["image"] for t in train])["nearest_training_corr"] for c in test
    ]
    results["real_test_max_nearest_training_corr"] = float(np.max(real_near))
    if skipped:
        results["skipped_rows"] = skipped
    results["seconds"] = round(time.time() - start, 1)
    save_json(results, os.path.join(output_dir, "metrics.json"), overwrite=True)
    _plots(results, previews, test[0], output_dir, labels.focus)
    _report(results, output_dir, list(labels.regions))
    return results


def load_references(synth, datalist: str, limit, segmenter, segmenter_file) -> dict:
    """What every row is measured against, the same for every seed: the real training and test volumes, the
    feature extractor and the real test features, and the reference figures (real train vs test FID, the real
    volumes' consistency, the autoencoder round trips, the judge's Dice on real volumes) with the judge itself."""
    cfg = synth.cfg
    train = load_volumes(datalist, "training", cfg["grid"], cfg["num_labels"], cfg["modality"])
    test = load_volumes(datalist, "test", cfg["grid"], cfg["num_labels"], cfg["modality"], limit)
    extractor = EncoderFeatures(synth.model.autoencoder, synth.model.device)
    size = cfg["grid"].size
    real_test_f = features_per_plane([c["image"] for c in test], extractor, size)
    floor = fid_per_plane(features_per_plane([c["image"] for c in train], extractor, size), real_test_f)
    labels = cfg["labels"]
    real_consistency = consistency([c["image"] for c in test], _anatomy(test, labels))
    results = {"real_train_vs_real_test": {**floor}, "real_test": {**real_consistency}}
    # the autoencoder round trip (every real axial slice encoded, then decoded on its own or, with the cross-slice
    # decoder, all together): the smoothest, most consistent volume a decoder gives, a reference beside the real one
    for decoder, key in (("slice", "autoencoder_round_trip"), ("volume", "volume_decoder_round_trip")):
        try:
            trips = [synth.model.decode(synth.model.encode(np.moveaxis(c["image"], 2, 0)), decoder) for c in test]
        except Gem3dInputError as exc:  # no cross-slice decoder weights: that reference is left out
            logger.warning(f"{key} left out: {exc}")
            continue
        trip_m = consistency(trips, _anatomy(test, labels))
        results[key] = {**trip_m, **relative_to(real_consistency, trip_m)}
    judge = None
    if segmenter is not None and segmenter_file and os.path.isfile(segmenter_file):
        judge = load_weights(segmenter, segmenter_file, "segmenter", synth.model.device)
        results["real_test_mask_adherence"] = _adherence(judge, [[datalist, "test"]], cfg, synth.model.device, limit)
    elif segmenter is not None:
        logger.warning(
            f"no segmenter weights at {segmenter_file}: mask adherence is left out (run train_segmenter.json)"
        )
    return {
        "train": train,
        "test": test,
        "extractor": extractor,
        "real_test_f": real_test_f,
        "judge": judge,
        "results": results,
    }


def _informed_mode(row: dict, synth) -> str | None:
    """The row's informed-slice mode: its own, else that of the synthesizer it runs on (the 3D backend: none)."""
    return row.get("informed", {}).get("mode") or synth.informed.get("mode")


def _anatomy(cases: list[dict], labels) -> list:
    """Where the metrics look for anatomy: the mask when its foreground is the whole anatomy (a brain mask), else
    the image itself (CT organ masks leave most of the body unlabelled)."""
    return [c["label"] if labels.covers_anatomy else None for c in cases]


def _adherence(judge, sources, cfg: dict, device, limit=None) -> dict:
    """Mean Dice / HD95 per region of the judge's segmentation against the volumes' own masks."""
    cases = load_sources(sources, cfg["grid"], cfg["num_labels"], cfg["modality"], limit)
    mean = score_volumes(judge, cases, device, cfg["labels"].regions)["mean"]
    return {f"mask_{k}_{region}": v[k] for region, v in mean.items() for k in ("dice", "hd95")}


def _plots(results: dict, previews: dict, real_case: dict, output_dir: str, focus) -> None:
    names = [k for k in results if isinstance(results[k], dict) and "fid_a" in results[k]]
    fig, axes = new_figure(1, 2, figsize=(12, 3.8))
    x = np.arange(len(names))
    for i, plane in enumerate(("fid_a", "fid_c", "fid_s")):
        axes[0].bar(x + (i - 1) * 0.27, [results[n][plane] for n in names], 0.27, label=plane)
    axes[0].set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    axes[0].set_title("FID per plane (lower is better)")
    axes[0].legend()
    fid_rows = [n for n in names if "ms_ssim" in results[n]]
    axes[1].bar(fid_rows, [results[n]["ms_ssim"] for n in fid_rows])
    axes[1].set_title("MS-SSIM to the real volume (true or no informed slice)")
    axes[1].tick_params(axis="x", labelrotation=25, labelsize=8)
    fig.tight_layout()
    save_figure(fig, os.path.join(output_dir, "metrics.png"), overwrite=True)
    # every preview with the mask it was generated from: the same planes (centred on the tumour) and outlines
    for name, (vol, mask) in [("real", (real_case["image"], real_case["label"])), *previews.items()]:
        f = triplanar_figure(vol, mask, title=name, focus=focus)
        save_figure(f, os.path.join(output_dir, "previews", f"{name}.png"), overwrite=True)


def _summarise_seeds(per_seed: dict, output_dir: str, regions: list) -> dict:
    """Each row's figures over the seeds ({seed: metrics}): mean, standard deviation and the values in seed order
    (metrics_seeds.json, report_seeds.md). A figure of 16 volumes moves with the draw (FID by 4-10% from seed to seed
    on the demo): rows are told apart only by differences larger than that spread."""
    seeds = list(per_seed)
    rows = [k for k, v in per_seed[seeds[0]].items() if isinstance(v, dict) and "fid_a" in v]
    summary: dict = {"seeds": seeds}
    for name in rows:
        summary[name] = {}
        for key in per_seed[seeds[0]][name]:
            values = [per_seed[s][name].get(key) for s in seeds]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                continue
            values = [float(v) for v in values]
            summary[name][key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)), "values": values}
    save_json(summary, os.path.join(output_dir, "metrics_seeds.json"), overwrite=True)
    columns = _columns(regions)
    lines = [
        f"# gem3d evaluation over seeds {seeds} (mean ± standard deviation)",
        "",
        "| setting | " + " | ".join(columns) + " |",
        "|" + " --- |" * (len(columns) + 1),
    ]
    for name in rows:
        cells = [summary[name].get(key) for key in columns.values()]
        lines.append(
            f"| {name} | " + " | ".join("" if c is None else f"{c['mean']:.4f} ± {c['sd']:.4f}" for c in cells) + " |"
        )
    lines += ["", f"Each seed's own metrics and report: {', '.join(f'seed{s}/' for s in seeds)}."]
    save_text("\n".join(lines) + "\n", os.path.join(output_dir, "report_seeds.md"), overwrite=True)
    return summary


def _columns(regions: list) -> dict:
    """The report's columns: heading -> metrics key."""
    return {
        "FID-A": "fid_a",
        "FID-C": "fid_c",
        "FID-S": "fid_s",
        "grad. anisotropy (x real)": "grad_anisotropy_x_real",
        "adjacent-slice SSIM (- real)": "adjacent_ssim_minus_real",
        "MS-SSIM": "ms_ssim",
        "SSIM": "ssim",
        "PSNR": "psnr",
        "diversity MS-SSIM": "diversity_ms_ssim",
        "max corr to a training volume": "max_nearest_training_corr",
        **{f"mask Dice {r}": f"mask_dice_{r}" for r in regions},
        "s / volume": "seconds_per_volume",
    }


def _report(results: dict, output_dir: str, regions: list) -> None:
    round_trip = results["autoencoder_round_trip"]
    columns = _columns(regions)
    lines = [
        "# gem3d evaluation",
        "",
        "| setting | " + " | ".join(columns) + " |",
        "|" + " --- |" * (len(columns) + 1),
    ]
    fmt = lambda v: "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    for name, m in results.items():
        if isinstance(m, dict) and "fid_a" in m:
            lines.append(f"| {name} | " + " | ".join(fmt(m.get(k)) for k in columns.values()) + " |")
    lines += [
        "",
        f"Real test volumes: gradient anisotropy {results['real_test']['grad_anisotropy']:.3f}, adjacent-slice "
        f"SSIM {results['real_test']['adjacent_ssim']:.3f} (the references of the two consistency columns); the "
        f"autoencoder round trip of the same volumes: {round_trip['grad_anisotropy_x_real']:.3f}x "
        f"real and {round_trip['adjacent_ssim_minus_real']:+.3f} (real scanner noise, which the "
        "decoder does not reproduce, lowers the real adjacent-slice SSIM).",
        f"Real test volumes: highest correlation with a training volume "
        f"{results['real_test_max_nearest_training_corr']:.3f} (reference for the privacy column).",
        f"Wall time: {results['seconds']} s.",
    ]
    if "volume_decoder_round_trip" in results:
        vtrip = results["volume_decoder_round_trip"]
        lines.insert(
            -2,
            f"Round trip through the decoder with cross-slice layers: {vtrip['grad_anisotropy_x_real']:.3f}x real "
            f"and {vtrip['adjacent_ssim_minus_real']:+.3f}.",
        )
    for name, why in results.get("skipped_rows", {}).items():
        lines.insert(-1, f"Row {name} skipped: {why}.")
    if "real_test_mask_adherence" in results:
        real = results["real_test_mask_adherence"]
        ceiling = ", ".join(f"{r} {real[f'mask_dice_{r}']:.3f}" for r in regions)
        lines.insert(
            -1,
            "Mask adherence: Dice of the segmenter trained on real data (train_segmenter.json) against the "
            f"conditioning mask; on the real test volumes it reaches {ceiling} (the ceiling).",
        )
    save_text("\n".join(lines) + "\n", os.path.join(output_dir, "report.md"), overwrite=True)
