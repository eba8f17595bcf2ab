"""Does the evaluation's FID reward or punish scanner noise on *real* anatomy? (BENCHMARKS, "Which misses are real")

The 32 real training scans are encoded and decoded slice by slice (the autoencoder round trip: real anatomy, no
scanner noise), then given noise back in several ways, and each set is scored with FID-A/C/S against the 8 real test
scans, exactly as evaluate.json scores generated volumes
(with the two through-plane measures beside it). Run from the repository root:

    python bundle/docs/noise_fid_check.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monai.bundle import ConfigParser  # noqa: E402
from scripts.evaluate import load_references  # noqa: E402
from scripts.metrics.consistency import consistency, relative_to  # noqa: E402
from scripts.metrics.fid import features_per_plane, fid_per_plane  # noqa: E402
from scripts.sampling.scanner_noise import add_scanner_noise, estimate_noise_sigma  # noqa: E402
from scripts.sampling.synthesize import delivered  # noqa: E402


def main() -> None:
    parser = ConfigParser()
    parser.read_config("bundle/configs/inference.json")
    synth, datalist = parser.get_parsed_content("gem3d_synthesizer"), parser.get_parsed_content("datalist")
    rng, size = np.random.default_rng(0), synth.cfg["grid"].size
    # what evaluate.json measures generated volumes against (no segmenter: Dice is not part of this check)
    refs = load_references(synth, datalist, 8, None, None)
    train, extractor, real_test, real_consistency = (
        refs["train"],
        refs["extractor"],
        refs["real_test_f"],
        refs["results"]["real_test"],
    )

    def scores(volumes) -> str:
        fid = fid_per_plane(real_test, features_per_plane(volumes, extractor, size))
        through = relative_to(real_consistency, consistency(volumes, [c["label"] for c in train]))
        return (
            " / ".join(f"{v:.3f}" for v in fid.values())
            + f" | adjacent SSIM {through['adjacent_ssim_minus_real']:+.3f}"
            + f" | anisotropy {through['grad_anisotropy_x_real']:.3f}x"
        )

    def inside(case, image):  # as gem3d delivers its volumes: non-negative, background zeroed
        return delivered(image, case["label"], zero_background=True)

    trips = [inside(c, synth.model.decode(synth.model.encode(np.moveaxis(c["image"], 2, 0)), "slice")) for c in train]
    sigmas = [estimate_noise_sigma(c["image"], c["label"] > 0) for c in train]
    others = list(zip(train[1:] + train[:1], trips[1:] + trips[:1]))
    rows = {
        "real training scans": [c["image"] for c in train],
        "round trip (no scanner noise)": trips,
        "round trip + Rician noise at each scan's own level": [
            inside(c, add_scanner_noise(t, s, rng)) for c, t, s in zip(train, trips, sigmas)
        ],
        "round trip + Rician noise at half that level": [
            inside(c, add_scanner_noise(t, s / 2, rng)) for c, t, s in zip(train, trips, sigmas)
        ],
        "round trip + Gaussian noise at each scan's own level": [
            inside(c, t + rng.normal(0.0, s, t.shape)) for c, t, s in zip(train, trips, sigmas)
        ],
        "round trip + another scan's residual (real minus its round trip)": [
            inside(c, t + (o["image"] - ot)) for c, t, (o, ot) in zip(train, trips, others)
        ],
    }
    print(f"noise level (Immerkaer, median over the training scans): {np.median(sigmas):.4f}")
    print("FID-A / C / S against the real test scans | adjacent-slice SSIM and gradient anisotropy against them")
    for name, volumes in rows.items():
        print(f"{name:66s} | {scores(volumes)}")


if __name__ == "__main__":
    main()
