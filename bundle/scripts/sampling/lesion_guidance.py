"""Lesion guidance: how strongly the window model is pushed toward the mask's lesions, decided per volume.

The window model draws lesions less conspicuously than real scans show them: its volumes, judged by a segmenter
trained on real scans, reached whole-tumour Dice 0.535 with another patient's informed slice against 0.595 on the
real scans. Guidance in the manner of classifier-free guidance needs no retraining here, because the model knows the
same patient without lesions: it has seen tumour-free masks and tumour-free windows. Its prediction for the mask with
the lesions relabelled as anatomy is the reference, and the prediction around the lesions is pushed away from it
(``PropagationSampler.predict``). ``"auto"`` (the default) guides with ``AUTO_SCALE`` except where the informed slice
is the volume's own scan ("true"): that volume is re-made to be compared with its scan, and guidance costs fidelity
there (BENCHMARKS, "Lesion guidance"). Label sets without lesion labels get the plain model. The scale was measured
on the shipped MRI model and its demo; a model trained on other data should have its own measured
(``evaluate.json`` rows with ``lesion_guidance``).
"""

from __future__ import annotations

from ..errors import Gem3dInputError, number_in
from .scanner_noise import OWN_SCAN_MODES

DEFAULT_SETTING = "auto"
AUTO_SCALE = 2.0  # measured on the demo (BENCHMARKS): 1.5 gave the Dice but not the FID, 3 less Dice
MAX_SCALE = 10.0


def check_guidance(value) -> str | float:
    """``"auto"`` or a scale in [0, 10] (1: the plain model; 0: the patient as if without the lesions)."""
    if value == "auto":
        return value
    scale = number_in(value, 0.0, MAX_SCALE)
    if scale is None:
        raise Gem3dInputError(f"lesion_guidance must be 'auto' or a scale in [0, {MAX_SCALE:g}], not {value!r}")
    return scale


def guidance_scale(setting, informed_mode: str | None, lesion_labels: tuple) -> tuple[float, str]:
    """The scale for one volume and where it came from."""
    setting = check_guidance(setting)
    if setting != "auto":
        if setting != 1.0 and not lesion_labels:
            raise Gem3dInputError("lesion_guidance needs a label set with lesion labels (models/label_set.json)")
        return setting, "given"
    if not lesion_labels:
        return 1.0, "auto: the label set has no lesion labels"
    if informed_mode in OWN_SCAN_MODES:
        return 1.0, "auto: the informed slice is this volume's own scan"
    return AUTO_SCALE, "auto"
