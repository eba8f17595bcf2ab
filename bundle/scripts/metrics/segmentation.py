"""Segmentation scores per region of the label set: Dice and HD95 (mm) with MONAI's metrics.

Regions come from ``LabelSet.regions`` (BraTS: whole tumour, tumour core, enhancing; CT: one per organ). Used twice:
the downstream study (a segmenter trained on real or synthetic data, scored on the real test set) and mask adherence
(the segmenter trained on real data segments synthetic volumes; scored against their masks).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.utils import one_hot


def _region(labels: torch.Tensor, values) -> torch.Tensor:
    return torch.isin(labels, torch.as_tensor(values)).float()


@torch.no_grad()
def predict(network, image: np.ndarray, device) -> np.ndarray:
    """(S, S, Z) or (1, S, S, Z) image -> (S, S, Z) label map (argmax of the network)."""
    x = torch.as_tensor(np.asarray(image, np.float32)).reshape(1, 1, *np.shape(image)[-3:]).to(device)
    return network(x).argmax(1)[0].cpu().numpy().astype(np.int16)


def region_scores(pred: np.ndarray, truth: np.ndarray, regions: dict, spacing=None) -> dict[str, dict[str, float]]:
    """Dice and HD95 per region ``{name: label values}`` (absent in both: Dice 1, HD95 0; absent in one: Dice 0,
    HD95 nan)."""
    p, t = torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(truth))
    out = {}
    for name, values in regions.items():
        rp, rt = _region(p, values)[None, None], _region(t, values)[None, None]
        yp, yt = one_hot(rp.long(), 2), one_hot(rt.long(), 2)
        if rt.sum() == 0 and rp.sum() == 0:
            out[name] = {"dice": 1.0, "hd95": 0.0}
            continue
        dice = DiceMetric(include_background=False, ignore_empty=False)(yp, yt).item()
        if rt.sum() == 0 or rp.sum() == 0:
            hd = float("nan")
        else:
            hd = HausdorffDistanceMetric(include_background=False, percentile=95)(
                yp, yt, spacing=None if spacing is None else [float(s) for s in spacing]
            ).item()
        out[name] = {"dice": float(dice), "hd95": float(hd)}
    return out


def mean_scores(per_case: list[dict]) -> dict[str, dict[str, float]]:
    """Mean over cases per region (nan HD95 values are left out of the mean and counted)."""
    out = {}
    for name in [k for k in per_case[0] if k != "id"] if per_case else []:
        dice = [c[name]["dice"] for c in per_case]
        hd = [c[name]["hd95"] for c in per_case if np.isfinite(c[name]["hd95"])]
        out[name] = {
            "dice": float(np.mean(dice)),
            "hd95": float(np.mean(hd)) if hd else float("nan"),
            "hd95_undefined": len(per_case) - len(hd),
        }
    return out


def score_volumes(network, cases: list[dict], device, regions: dict) -> dict:
    """Segment every case (dicts with channel-first image/label, id, spacing) and score it per region."""
    network.eval()
    per_case = []
    for case in cases:
        s = region_scores(predict(network, case["image"], device), case["label"][0], regions, case.get("spacing"))
        per_case.append({"id": case["id"], **s})
    return {"mean": mean_scores(per_case), "cases": per_case}
