"""Scores of a volume classifier on a labelled set: accuracy and ROC AUC (MONAI's ``compute_roc_auc``)."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_roc_auc


@torch.no_grad()
def score_classifier(network, items: list[dict], device, positive: int = 1) -> dict:
    """``items`` from ``volume_dataset.class_items``; AUC of class ``positive`` against the rest."""
    network.eval()
    probs = []
    for item in items:
        x = torch.as_tensor(item["image"])[None].to(device)
        probs.append(torch.softmax(network(x).float(), 1)[0].cpu())
    probs = torch.stack(probs)
    labels = torch.tensor([int(it["label"]) for it in items])
    both = len(set(labels.tolist())) > 1
    return {
        "accuracy": float((probs.argmax(1) == labels).float().mean()),
        "auc": float(compute_roc_auc(probs[:, positive], (labels == positive).long())) if both else float("nan"),
        "cases": len(items),
        "predicted_positive": int((probs.argmax(1) == positive).sum()),
        "ids": [it["id"] for it in items],
        "probabilities": np.round(probs[:, positive].numpy(), 4).tolist(),
    }
