"""Does a reward agree with the metrics it does not see? The check behind BENCHMARKS "Feature matching".

Scores evaluation rows already generated (``evaluate.json``, rows gem3d_ic / gem3d_true in the base folder and
tuned_ic / tuned_true in each run's folder) under the planes critic's logit (the reward every earlier run trained on)
and under feature matching with the planes and with the slice critic (``reward_features.json``), with the real test and
training volumes as references; then, per run and mode, the paired change of each reward from stage 2 and in how many
volumes it rose. A reward that rises where the run's FID rose points the policy the wrong way. Run from the repository
root after the rows exist:

    python bundle/docs/reward_alignment_check.py bundle/eval/seed_spread/bound1 bundle/eval/seed_spread/control

With --medlord first, the 3D backend's rows: medlord_3d_ldm (the starting ControlNet, in the base folder) against
medlord_reward in each run's folder (docs/reward_finetune.sh step 3j):

    S=bundle/eval/seed_spread; python bundle/docs/reward_alignment_check.py --medlord $S/medlord3 $S/medlord3
"""

import os
import sys

import numpy as np

sys.path.insert(0, "bundle")
from monai.bundle import ConfigParser  # noqa: E402
from scripts.evaluate import _load_synth  # noqa: E402
from scripts.reward.critic_data import real_volumes  # noqa: E402
from scripts.reward.feature_matching import FeatureMatchingReward  # noqa: E402
from scripts.reward.rewards import MultiScaleReward  # noqa: E402

# per mode, the starting weights' row (in the base folder) and the tuned weights' row (in each run's folder)
GEM3D_ROWS = {"ic": ("gem3d_ic", "tuned_ic"), "true": ("gem3d_true", "tuned_true")}
MEDLORD_ROWS = {"medlord": ("medlord_3d_ldm", "medlord_reward")}


def main(base: str, runs: list, pairs: dict = GEM3D_ROWS) -> None:
    parser = ConfigParser()
    parser.read_config(["bundle/configs/inference.json", "bundle/configs/reward.json"])
    defs, files = parser.get_parsed_content("critic_defs"), parser.get_parsed_content("critic_files")
    where = [parser.get_parsed_content(k) for k in ("datalist", "model_grid", "num_labels", "modality")]
    train, test = (real_volumes([[where[0], part]], *where[1:]) for part in ("training", "test"))
    rewards = {
        "logit planes": MultiScaleReward(defs, files, {"planes": 1.0}),
        "FM planes": FeatureMatchingReward(defs, files, {"planes": 1.0}, train),
        "FM slice": FeatureMatchingReward(defs, files, {"slice": 1.0}, train),
    }
    cfg = parser.get_parsed_content("gem3d_synthesizer").cfg

    def scores(volumes) -> dict:  # a reward called on an array scores without gradient
        return {name: np.array([r(v)["reward"] for v in volumes]) for name, r in rewards.items()}

    print("mean reward: " + " | ".join(rewards))
    table = {
        "real test": scores([c["image"][0] for c in test[:8]]),
        "real training": scores([c["image"][0] for c in train]),
    }
    for folder, which in [(base, 0)] + [(run, 1) for run in runs]:
        for names in pairs.values():
            cases, _ = _load_synth(os.path.join(folder, names[which]), cfg)
            table[f"{os.path.basename(folder)}:{names[which]}"] = scores([c["image"] for c in cases])
    for row, s in table.items():
        print(f"{row:>24}: " + " | ".join(f"{v.mean():+.3f}" for v in s.values()))
    print("paired change from the starting weights (rose in n of N volumes)")
    for run in runs:
        for mode, (start, end) in pairs.items():
            tuned, stage2 = table[f"{os.path.basename(run)}:{end}"], table[f"{os.path.basename(base)}:{start}"]
            cells = [
                f"{(tuned[k] - stage2[k]).mean():+.4f} ({int((tuned[k] > stage2[k]).sum())}/{len(tuned[k])})"
                for k in rewards
            ]
            print(f"{os.path.basename(run) + ', ' + mode:>24}: " + " | ".join(cells))


if __name__ == "__main__":
    medlord = sys.argv[1:2] == ["--medlord"]
    args = sys.argv[1 + medlord :]
    if len(args) < 2:
        sys.exit(__doc__)
    main(args[0], args[1:], MEDLORD_ROWS if medlord else GEM3D_ROWS)
