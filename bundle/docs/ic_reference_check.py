"""Whose patient does an IC volume resemble? The check behind BENCHMARKS "Shipped: the
functional bound's weights" (question 3).

With another patient's informed slice (IC) a volume takes that patient's anatomy and contrast, so its FID against
the real *test* volumes also measures how far the informed patients (training cases) are from the test patients.
A model that follows its informed slice more closely then looks worse there, and better against the training set.
For evaluation rows already generated (``evaluate.json``), this prints each row's FID per plane against the real test
volumes (the table's figure), the real training volumes, and the informed patients alone; and, per volume, the
correlation inside the anatomy with the informed patient's real volume and with the test patient's own, paired
against the first row given. Run from the repository root after the rows exist:

    python bundle/docs/ic_reference_check.py bundle/eval/seed_spread/bound1 gem3d_ic tuned_ic gem3d_true tuned_true
"""

import os
import sys

import numpy as np

sys.path.insert(0, "bundle")
from monai.bundle import ConfigParser  # noqa: E402
from scripts.data.slices import load_volumes  # noqa: E402
from scripts.evaluate import _load_synth, synth_records  # noqa: E402
from scripts.metrics.features import EncoderFeatures  # noqa: E402
from scripts.metrics.fid import features_per_plane, fid_per_plane  # noqa: E402


def anatomy_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two model-space volumes over the voxels where either has anatomy."""
    keep = (a > 0.02) | (b > 0.02)
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


def main(folder: str, rows: list) -> None:
    parser = ConfigParser()
    parser.read_config("bundle/configs/inference.json")
    synth, datalist = parser.get_parsed_content("gem3d_synthesizer"), parser.get_parsed_content("datalist")
    cfg = synth.cfg
    # the evaluation's references (evaluate.load_references): the first 8 test cases, every training case
    train, test = (
        {c["id"]: c["image"] for c in load_volumes(datalist, part, cfg["grid"], cfg["num_labels"], cfg["modality"], n)}
        for part, n in (("training", None), ("test", 8))
    )
    size, extractor = cfg["grid"].size, EncoderFeatures(synth.model.autoencoder, synth.model.device)
    test_f, train_f = (features_per_plane(list(v.values()), extractor, size) for v in (test, train))
    print("FID-A / C / S against: real test (8) | real training (32) | the informed patients; then the mean")
    print("correlation with the informed patient's real volume and with the test patient's own (anatomy voxels)")
    base = None
    for name in rows:
        cases, entries = _load_synth(os.path.join(folder, name), cfg)
        vols = [c["image"] for c in cases]
        informed = [r["informed"].get("case") for r in synth_records(os.path.join(folder, name), entries)]
        fake_f = features_per_plane(vols, extractor, size)
        line = [fid_per_plane(test_f, fake_f), fid_per_plane(train_f, fake_f)]
        ic = [i for i in informed if i in train]
        if ic:
            line.append(fid_per_plane(features_per_plane([train[i] for i in sorted(set(ic))], extractor, size), fake_f))
        own = np.array([anatomy_corr(v, test[e["source"]]) for v, e in zip(vols, entries)])
        inf = np.array([anatomy_corr(v, train[i]) if i in train else np.nan for v, i in zip(vols, informed)])
        figs = " | ".join(" / ".join(f"{m[k]:.3f}" for k in ("fid_a", "fid_c", "fid_s")) for m in line)
        msg = f"{name:>12}: {figs}; corr informed {np.nanmean(inf):.4f}, own {own.mean():.4f}"
        if base is not None and base[0] == informed:
            d_inf, d_own = inf - base[1], own - base[2]
            msg += (
                f"; paired vs {rows[0]}: informed {np.nanmean(d_inf):+.4f} (higher in {int(np.nansum(d_inf > 0))}"
                f"/{len(ic)}), own {d_own.mean():+.4f} (higher in {int((d_own > 0).sum())}/{len(own)})"
            )
        if base is None:
            base = (informed, inf, own)
        print(msg)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
