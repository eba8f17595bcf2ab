"""Measurements of the joint model (``benchmark_joint.json``): control, realism, image-mask agreement, cost.

- Control: requests that span the training range (volume quantiles x training tumour centres), one case each;
  the error between requested and achieved volume, centre and (conditioned vs achieved) sphericity, median and
  90th percentile; lesions outside the anatomy; healthy requests (lesion voxels generated).
- Realism: cases with every attribute drawn from the training distribution; FID-A/C/S (gem3d's own autoencoder
  features, as the evaluation job) and the through-plane measures against the real test set; the distribution of
  the tumour attributes of generated vs real training masks.
- Agreement: the shipped segmenter's Dice on the generated image against the generated mask, beside its Dice on
  the real test volumes.
- Cost: seconds and peak resident memory per case.
Writes metrics.json, report.md, plots and previews under ``output_dir``.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
from tqdm import tqdm

from .benchmark import peak_rss_mb
from .data.slices import load_volumes
from .data.tumour_attributes import CENTRE, tumour_attributes
from .io import new_figure, save_figure, save_json, save_text
from .metrics.consistency import consistency, relative_to
from .metrics.features import EncoderFeatures
from .metrics.fid import features_per_plane, fid_per_plane
from .metrics.segmentation import score_volumes
from .networks.weights import load_weights
from .precision import cpu_features
from .preview import triplanar_figure

logger = logging.getLogger(__name__)
FIDS = ("fid_a", "fid_c", "fid_s")


def control_requests(table, n_volumes: int = 8, n_centres: int = 4, seed: int = 0) -> list[dict]:
    """``n_volumes`` volume quantiles (5th-95th percentile of the training tumours) x ``n_centres`` training
    tumour centres."""
    rng = np.random.default_rng(seed)
    sick = [r for r in table.rows if r["volume_ml"] > 0]
    volumes = np.quantile([r["volume_ml"] for r in sick], np.linspace(0.05, 0.95, n_volumes))
    centres = [sick[i] for i in rng.choice(len(sick), n_centres, replace=False)]
    return [{"volume_ml": round(float(v), 2), **{c: round(r[c], 3) for c in CENTRE}} for v in volumes for r in centres]


def _errors(records: list[dict]) -> dict:
    vol = [abs(r["achieved"]["volume_ml"] - r["requested"]["volume_ml"]) / r["requested"]["volume_ml"] for r in records]
    centre = [max(abs(r["achieved"][c] - r["requested"][c]) for c in CENTRE) for r in records]
    sph = [abs(r["achieved"]["sphericity"] - r["conditioned_on"]["sphericity"]) for r in records]
    missed = sum(r["achieved"]["volume_ml"] == 0 for r in records)

    def stats(v):
        return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))}

    return {
        "volume_rel_error": stats(vol),
        "centre_error_max_axis": stats(centre),
        "sphericity_abs_error": stats(sph),
        "cases": len(records),
        "cases_without_tumour": int(missed),
        "lesions_outside_anatomy": int(sum(r["lesions_outside_anatomy"] for r in records)),
    }


def _generate(generator, requests: list[dict], seed: int, desc: str) -> list[dict]:
    out = []
    for i, req in enumerate(tqdm(requests, desc=desc, unit="case")):
        out.append(generator.generate(req, seed + i))
    return out


def run_joint_benchmark(
    generator,
    synth,
    datalist: str,
    output_dir: str,
    segmenter=None,
    segmenter_file: str | None = None,
    n_volumes: int = 8,
    n_centres: int = 4,
    n_free: int = 16,
    n_healthy: int = 4,
    seed: int = 0,
) -> dict:
    """See the module docstring. ``synth`` (GEM-3D's synthesizer) lends its autoencoder's encoder for FID, so the
    figures compare with the evaluation job's rows."""
    start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    cfg, labels, grid = synth.cfg, generator.labels, generator.grid
    table = generator.model.table
    control = _generate(generator, control_requests(table, n_volumes, n_centres, seed), seed, "control cases")
    healthy = _generate(generator, [{"volume_ml": 0.0}] * n_healthy, seed + 1000, "healthy cases")
    free = _generate(generator, [{}] * n_free, seed + 2000, "free cases")

    test = load_volumes(datalist, "test", cfg["grid"], cfg["num_labels"], cfg["modality"])
    train = load_volumes(datalist, "training", cfg["grid"], cfg["num_labels"], cfg["modality"])
    extractor = EncoderFeatures(synth.model.autoencoder, synth.model.device)
    real_f = features_per_plane([c["image"] for c in test], extractor, grid.size)
    real_c = consistency([c["image"] for c in test], [c["label"] for c in test])
    fake = control + free
    realism = fid_per_plane(real_f, features_per_plane([r["image"] for r in fake], extractor, grid.size))
    realism.update(consistency([r["image"] for r in fake], [r["mask"] for r in fake]))
    realism.update(relative_to(real_c, realism))
    floor = fid_per_plane(features_per_plane([c["image"] for c in train], extractor, grid.size), real_f)

    results = {
        "cpu": cpu_features(),
        "control": _errors([r["record"] for r in control]),
        "healthy": {
            "cases": n_healthy,
            "cases_with_lesion_voxels": int(sum(r["record"]["achieved"]["volume_ml"] > 0 for r in healthy)),
        },
        "realism": realism,
        "real_test": real_c,
        "real_train_vs_real_test": floor,
    }
    if segmenter is not None and segmenter_file and os.path.isfile(segmenter_file):
        judge = load_weights(segmenter, segmenter_file, "segmenter", synth.model.device)
        spacing = np.asarray(grid.spacing, np.float32)

        def as_cases(items):
            return [
                {"image": im[None].astype(np.float32), "label": lab[None].astype(np.int64), "id": str(i), "spacing": sp}
                for i, (im, lab, sp) in enumerate(items)
            ]

        gen_cases = as_cases([(r["image"], r["mask"], spacing) for r in fake])
        real_cases = as_cases([(c["image"], c["label"], np.asarray(c["geometry"].spacing, np.float32)) for c in test])
        results["agreement_generated"] = score_volumes(judge, gen_cases, synth.model.device, labels.regions)["mean"]
        results["agreement_real_test"] = score_volumes(judge, real_cases, synth.model.device, labels.regions)["mean"]
    seconds = [r["record"]["seconds"] for r in control + healthy + free]
    results["cost"] = {
        "seconds_per_case_mean": round(float(np.mean(seconds)), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "steps": generator.steps,
        "guidance_scale": generator.guidance,
        "precision": generator.precision,
    }
    real_attrs = [tumour_attributes(c["label"], grid.spacing, labels.lesion_labels) for c in train]
    results["attributes"] = {
        "generated": _summary([r["record"]["achieved"] for r in free]),
        "real_training": _summary(real_attrs),
    }
    results["seconds"] = round(time.time() - start, 1)
    save_json(results, os.path.join(output_dir, "metrics.json"), overwrite=True)
    _plots(control, free, real_attrs, test, output_dir, labels)
    _report(results, output_dir)
    return results


def _summary(attrs: list[dict]) -> dict:
    out = {}
    for key in ("volume_ml", "sphericity", "count"):
        v = np.array([a[key] for a in attrs if a["volume_ml"] > 0])
        out[key] = {
            "median": float(np.median(v)),
            "p10": float(np.percentile(v, 10)),
            "p90": float(np.percentile(v, 90)),
        }
    out["healthy_fraction"] = float(np.mean([a["volume_ml"] == 0 for a in attrs]))
    return out


def _plots(control, free, real_attrs, test, output_dir: str, labels) -> None:
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    req = [r["record"]["requested"]["volume_ml"] for r in control]
    got = [r["record"]["achieved"]["volume_ml"] for r in control]
    axes[0].scatter(req, got, s=12)
    hi = max(req + got) * 1.05
    axes[0].plot([0, hi], [0, hi], "k--", lw=0.8)
    axes[0].fill_between([0, hi], [0, 0.8 * hi], [0, 1.2 * hi], color="g", alpha=0.1, label="within 20%")
    axes[0].set(xlabel="requested volume (ml)", ylabel="achieved volume (ml)", title="volume control")
    axes[0].legend(fontsize=8)
    for axis, c in enumerate(CENTRE):
        axes[1].scatter(
            [r["record"]["requested"][c] for r in control], [r["record"]["achieved"][c] for r in control], s=10, label=c
        )
    axes[1].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[1].set(xlabel="requested centre", ylabel="achieved centre", title="position control (fraction of anatomy)")
    axes[1].legend(fontsize=8)
    bins = np.linspace(0, max([a["volume_ml"] for a in real_attrs] + [1]) * 1.2, 15)
    axes[2].hist(
        [a["volume_ml"] for a in real_attrs if a["volume_ml"] > 0], bins, alpha=0.5, density=True, label="real"
    )
    gen = [r["record"]["achieved"]["volume_ml"] for r in free]
    axes[2].hist([v for v in gen if v > 0], bins, alpha=0.5, density=True, label="generated (free)")
    axes[2].set(xlabel="tumour volume (ml)", title="attribute distribution")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, os.path.join(output_dir, "control.png"), overwrite=True)
    for name, vol, mask in [
        ("real_test_0", test[0]["image"], test[0]["label"]),
        *[(f"control_{i}", r["image"], r["mask"]) for i, r in enumerate(control[:: max(1, len(control) // 4)])],
        *[(f"free_{i}", r["image"], r["mask"]) for i, r in enumerate(free[:4])],
    ]:
        f = triplanar_figure(vol, mask, title=name, focus=labels.lesion_labels)
        save_figure(f, os.path.join(output_dir, "previews", f"{name}.png"), overwrite=True)


def _report(results: dict, output_dir: str) -> None:
    c, r, cost = results["control"], results["realism"], results["cost"]
    floor = results["real_train_vs_real_test"]
    lines = [
        "# Joint image + mask model: measured",
        "",
        f"CPU: {results['cpu']}",
        "",
        "| control | median | 90th percentile |",
        "|---|---|---|",
        *[f"| {k} | {v['median']:.3f} | {v['p90']:.3f} |" for k, v in c.items() if isinstance(v, dict)],
        "",
        f"{c['cases']} control cases; without tumour: {c['cases_without_tumour']}; lesions outside the anatomy: "
        f"{c['lesions_outside_anatomy']}; healthy requests with lesion voxels: "
        f"{results['healthy']['cases_with_lesion_voxels']} of {results['healthy']['cases']}.",
        "",
        "| realism | FID-A | FID-C | FID-S | grad. anisotropy (x real) | adjacent-slice SSIM (- real) |",
        "|---|---|---|---|---|---|",
        f"| generated | {r['fid_a']:.2f} | {r['fid_c']:.2f} | {r['fid_s']:.2f} | {r['grad_anisotropy_x_real']:.2f} | "
        f"{r['adjacent_ssim_minus_real']:+.3f} |",
        "| real train vs real test | " + " | ".join(f"{floor[k]:.2f}" for k in FIDS) + " | 1 | 0 |",
    ]
    if "agreement_generated" in results:
        lines += ["", "| segmenter Dice | " + " | ".join(results["agreement_generated"]) + " |", "|---|---|---|---|"]
        for name in ("agreement_generated", "agreement_real_test"):
            lines.append(f"| {name} | " + " | ".join(f"{v['dice']:.3f}" for v in results[name].values()) + " |")
    lines += ["", f"Cost: {cost}", ""]
    save_text("\n".join(lines), os.path.join(output_dir, "report.md"), overwrite=True)
