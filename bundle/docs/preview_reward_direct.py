"""The pictures of BENCHMARKS "Reward backpropagation": the first sample of demo_033 with another patient's informed
slice (IC) and with its own (true), stage 2 against the kept weights of some runs, all on one grey window.
Run after docs/reward_finetune.sh step 3f: python bundle/docs/preview_reward_direct.py (runs 2, 3 and 5), and after
step 3g: python bundle/docs/preview_reward_direct.py --base bound1 --runs bound1 bound2
--out preview_reward_bound.png (the evaluation folders under eval/seed_spread; the stage-2 rows from --base).
For the 3D backend (step 3j), --modes medlord: the rows medlord_3d_ldm (the starting ControlNet, from --base) and
medlord_reward of each run."""

import argparse
import os
import sys

import nibabel as nib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from scripts.data.model_space import normalise_intensity  # noqa: E402
from scripts.preview import save_comparison  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
CASE = "demo_033_gem3d_r0_s1.nii.gz"


def row(label: str, path: str):
    image = nib.load(path)
    return label, image.get_fdata(), nib.load(path.replace("/images/", "/labels/")).get_fdata(), image.affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="direct2", help="the evaluation folder whose stage-2 rows are shown")
    parser.add_argument("--runs", nargs="+", default=["direct2", "direct3", "direct5"])
    parser.add_argument("--out", default="preview_reward_direct.png")
    parser.add_argument("--modes", nargs="+", default=["ic", "true"], help="informed modes, or medlord")
    args = parser.parse_args()
    ev = os.path.join(ROOT, "eval", "seed_spread")
    real = nib.load(os.path.join(ROOT, "data", "demo", "imagesTs", "demo_033.nii.gz"))
    real_mask = nib.load(os.path.join(ROOT, "data", "demo", "labelsTs", "demo_033.nii.gz")).get_fdata()
    # the real scan in model intensities, as preprocessing maps it
    rows = [("real demo_033", normalise_intensity(real.get_fdata()), real_mask, real.affine)]
    for mode in args.modes:
        start, tuned = ("medlord_3d_ldm", "medlord_reward") if mode == "medlord" else (f"gem3d_{mode}", f"tuned_{mode}")
        rows.append(
            row(
                f"seed 0, {'starting ControlNet' if mode == 'medlord' else 'stage 2'}, {mode}",
                f"{ev}/{args.base}/{start}/images/{CASE}",
            )
        )
        for run in args.runs:
            rows.append(row(f"{run}, {mode}", f"{ev}/{run}/{tuned}/images/{CASE}"))
    out = os.path.join(ROOT, "docs", "images", "reward", args.out)
    # no suptitle: on a figure this tall it covers the first row's labels; the rows say what they are
    save_comparison(out, [r[:3] for r in rows], "", rows[0][3], focus=(2, 3, 4), window=(0, 1), overwrite=True)
    print(out)


if __name__ == "__main__":
    main()
