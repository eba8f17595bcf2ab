"""Paired differences between evaluation rows measured over the same seeds (BENCHMARKS' paired tables).

Each seed's figure of one row minus the same seed's figure of another: the mean, its standard error over the seeds
and the sign in each seed. Rows name a folder under bundle/eval/seed_spread and a row of its metrics_seeds.json
(written by ``evaluate.json --eval_seeds``). Run from the repository root:

    python bundle/docs/paired_seeds.py gaussian07 gem3d_ic_gaussian_noise default016_clipped gem3d_ic [FOLDER ROW ...]

compares the first row with each row after it.
"""

import json
import sys

import numpy as np

FIGURES = (
    "fid_a",
    "fid_c",
    "fid_s",
    "grad_anisotropy_x_real",
    "adjacent_ssim_minus_real",
    "ms_ssim",
    "ssim",
    "psnr",
    "mask_dice_whole_tumour",
    "diversity_ms_ssim",
)


def row(folder: str, name: str) -> dict:
    with open(f"bundle/eval/seed_spread/{folder}/metrics_seeds.json") as f:
        metrics = json.load(f)
    if name not in metrics:
        sys.exit(f"{folder}/metrics_seeds.json has no row {name!r}; its rows: {sorted(metrics)}")
    return metrics[name]


def main(args: list) -> None:
    if len(args) < 4 or len(args) % 2:
        sys.exit(__doc__)
    first = row(*args[:2])
    for folder, name in zip(args[2::2], args[3::2]):
        other = row(folder, name)
        print(f"{args[0]}/{args[1]} - {folder}/{name}")
        for key in FIGURES:
            if key not in first or key not in other:
                continue
            a, b = np.asarray(first[key]["values"]), np.asarray(other[key]["values"])
            if len(a) != len(b):
                sys.exit(f"{key}: {len(a)} seeds against {len(b)}; pair rows measured over the same seeds")
            diff = a - b
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            rel = f" ({100 * diff.mean() / b.mean():+.1f}%)" if key.startswith("fid") else ""
            signs = " ".join("+" if d > 0 else "-" if d < 0 else "0" for d in diff)
            print(f"  {key:26s} {a.mean():.4f} vs {b.mean():.4f}: {diff.mean():+.4f} ± {se:.4f}{rel}  [{signs}]")


if __name__ == "__main__":
    main(sys.argv[1:])
