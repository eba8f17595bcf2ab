"""What the reward critics learn from: real volumes against volumes the rollout sampler generates, in model space.

Both sides are in the window model's own space and intensities (real: the preprocessed training volumes; generated:
the sampler's model-space output, background zeroed like the synthesizer's), so a critic can only tell them apart
by what the generator gets wrong, not by a resampling or normalisation step that one side skipped.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data.datalist import read_datalist
from ..data.volume_dataset import load_sources
from ..errors import Gem3dInputError
from ..networks.layer_gains import gains_at
from ..sampling.synthesize import delivered

logger = logging.getLogger(__name__)


def generated_volumes(
    synth, sampler, datalist: str, section: str, cache_file: str, seed: int = 0, limit=None, informed=None, gain=None
):
    """Model-space volumes of every mask of a datalist section, generated with ``sampler`` and ``informed`` (the
    rollouts' settings), and with every pseudo-3D layer's output scaled by ``gain`` when one is given (a volume the
    layer-gain policy can move to); cached in ``cache_file`` (.npz) so that both critics see the same ones. Returns
    [{"image": (1, S, S, Z), "id"}]."""
    items = read_datalist(datalist, (section,))[section]
    items = items[: int(limit)] if limit else items
    ids = [it["id"] for it in items]
    # what made the volumes: a cache made otherwise (other weights, sampler, informed slices or gain) is not reused
    made_by = {"seed": int(seed), "informed": informed, "weights": synth.window_weights}
    made_by = {**made_by, "sampler": asdict(sampler.settings), **({} if gain is None else {"gain": float(gain)})}
    spec = json.dumps(made_by, sort_keys=True)
    if os.path.isfile(cache_file):
        with np.load(cache_file) as f:
            if "spec" in f.files and str(f["spec"]) == spec and list(f["ids"]) == ids:
                return [{"image": f[f"v{i}"][None], "id": c} for i, c in enumerate(ids)]
        logger.info(f"{cache_file} holds other volumes; generating again")
    volumes = []
    # the window model is shared with whatever runs next: scaled for this generation only
    scaled = nullcontext() if gain is None else gains_at(synth.model.window_net, gain)
    with scaled, synth.using_sampler(sampler):
        desc = f"generating {section} volumes for the critics" + ("" if gain is None else f" (gain {gain:g})")
        for i, item in enumerate(tqdm(items, desc=desc, unit="volume")):
            out = synth.generate_model_space(
                item["label"], seed + i, item["id"], image_path=item.get("image"), informed=informed
            )
            volumes.append(delivered(out["image"], out["mask"], synth.zero_background))
    os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
    tmp = cache_file + ".tmp.npz"
    np.savez_compressed(tmp, ids=np.asarray(ids), spec=np.asarray(spec), **{f"v{i}": v for i, v in enumerate(volumes)})
    os.replace(tmp, cache_file)
    return [{"image": v[None], "id": c} for v, c in zip(volumes, ids)]


def generated_family(
    synth, sampler, datalist: str, section: str, cache_file: str, seed: int = 0, limit=None, informed=None, gains=None
):
    """``generated_volumes`` at every pseudo-3D gain of ``gains`` (None or [1]: the window model as it is), one cache
    per gain beside ``cache_file``: the negatives of a critic hardened against the directions the layer-gain policy
    can take (a critic that only ever saw gain 1 can reward any move away from it, BENCHMARKS "Fourth run")."""
    out = []
    for g in gains or [1.0]:
        if float(g) == 1.0:
            out += generated_volumes(synth, sampler, datalist, section, cache_file, seed, limit, informed)
            continue
        stem, ext = os.path.splitext(cache_file)
        gained = generated_volumes(
            synth, sampler, datalist, section, f"{stem}_gain{g:g}{ext}", seed, limit, informed, g
        )
        out += [{**v, "id": f"{v['id']}_gain{g:g}"} for v in gained]
    return out


def real_volumes(sources, grid, num_labels: int, modality: str = "mri", limit=None) -> list[dict]:
    """The real volumes of ``sources`` in model space: [{"image": (1, S, S, Z), "label": (1, S, S, Z), "id"}]."""
    cases = load_sources(sources, grid, num_labels, modality, limit)
    return [{"image": c["image"], "label": c["label"], "id": c["id"]} for c in cases]


# what each critic scores: axial slices (2D, in-plane texture), coronal and sagittal planes (2D, through-plane
# coherence: slice-to-slice flicker shows there as streaks), the whole volume (3D, global structure)
CRITIC_KINDS = ("slice", "planes", "volume")


def critic_inputs(volume, kind: str, min_foreground: float = 0.05) -> torch.Tensor:
    """The (K, 1, ...) float32 inputs a critic of ``kind`` scores for one (S, S, Z) volume (array or tensor; from a
    tensor they stay differentiable in it, for reward backpropagation): its axial slices ("slice"), its coronal and
    sagittal planes ("planes"; (S, Z) each, resized by the critic), or the volume itself ("volume"). Planes with less
    than ``min_foreground`` anatomy are left out."""
    if kind not in CRITIC_KINDS:
        raise Gem3dInputError(f"critic kind must be one of {CRITIC_KINDS}, not {kind!r}")
    is_tensor = isinstance(volume, torch.Tensor)
    v = volume.float() if is_tensor else torch.from_numpy(np.ascontiguousarray(volume, np.float32))
    if kind == "volume":
        return v[None, None]
    out = []
    for axis in (2,) if kind == "slice" else (0, 1):
        planes = v.movedim(axis, 0)
        # the share in double precision, as NumPy computes a mean of booleans
        keep = (planes.detach() > 0.02).double().mean((1, 2)) >= min_foreground
        out += list(planes[keep])
    return torch.stack(out)[:, None] if out else v.new_zeros((0, 1, 1, 1))


def stacked_inputs(volumes, kind: str, min_foreground: float = 0.05) -> torch.Tensor:
    """The ``critic_inputs`` of several (S, S, Z) volumes in one (K, 1, ...) tensor; K is 0 when none has any."""
    parts = [critic_inputs(v, kind, min_foreground) for v in volumes]
    parts = [p for p in parts if len(p)]
    return torch.cat(parts) if parts else torch.zeros((0, 1, 1, 1))


class CriticDataset(Dataset):
    """Real (target 1) against generated (target 0) critic inputs (``critic_inputs``) of whole volumes."""

    def __init__(self, real: list[dict], fake: list[dict], kind: str, min_foreground: float = 0.05):
        if not real or not fake:
            raise Gem3dInputError(f"a critic needs real and generated volumes (got {len(real)} and {len(fake)})")
        self.items = []
        for target, cases in ((1.0, real), (0.0, fake)):
            for case in cases:
                parts = critic_inputs(np.asarray(case["image"], np.float32)[0], kind, min_foreground)
                self.items += [(p, target) for p in parts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        x, target = self.items[i]
        return {"image": x.contiguous(), "label": torch.tensor([target])}
