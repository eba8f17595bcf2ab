"""Does lesion guidance lower FID through realism, or through lesions placed where the real test scans have theirs?
(BENCHMARKS, "Lesion guidance")

The evaluation draws its volumes from the test masks, so their lesions sit where the real test scans' lesions are,
while its floor (real training vs real test) compares other patients' lesions. Here the volumes are drawn from the
32 *training* masks instead (IC, one sample each, the same draws for every scale) and scored with FID-A/C/S against
the 8 real test scans, the floor's setting. Run from the repository root:

    python bundle/docs/lesion_fid_check.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monai.bundle import ConfigParser  # noqa: E402
from scripts.data.datalist import read_datalist  # noqa: E402
from scripts.evaluate import load_references  # noqa: E402
from scripts.metrics.fid import features_per_plane, fid_per_plane  # noqa: E402
from scripts.sampling.synthesize import delivered  # noqa: E402


def main(scales=("1", "2", "3")) -> None:
    parser = ConfigParser()
    parser.read_config("bundle/configs/inference.json")
    synth, datalist = parser.get_parsed_content("gem3d_synthesizer"), parser.get_parsed_content("datalist")
    synth.sampler.progress = False
    refs = load_references(synth, datalist, 8, None, None)
    size = synth.cfg["grid"].size
    items = read_datalist(datalist, ("training",))["training"]
    floor = refs["results"]["real_train_vs_real_test"].values()
    print("real training vs real test (the floor): FID-A / C / S " + " / ".join(f"{v:.3f}" for v in floor))
    for scale in scales:
        volumes = []
        with synth.variant({"lesion_guidance": scale, "informed": {"mode": "ic"}}):
            for seed, item in enumerate(items):
                ms = synth.generate_model_space(item["label"], seed, item["id"])
                volumes.append(delivered(ms["image"], ms["mask"], synth.zero_background))
        fid = fid_per_plane(refs["real_test_f"], features_per_plane(volumes, refs["extractor"], size))
        print(
            f"IC from the training masks, lesion guidance {scale}: FID-A / C / S "
            + " / ".join(f"{v:.3f}" for v in fid.values())
            + f" (mean intensity {np.mean([v.mean() for v in volumes]):.4f})"
        )


if __name__ == "__main__":
    main()
