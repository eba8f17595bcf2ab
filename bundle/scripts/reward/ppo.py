"""PPO on the denoising chain (DDPO-IS style) for the GEM-3D window model.

One iteration: for a batch of masks (the prompts), ``samples_per_mask`` whole volumes are rolled out with the real
propagation sampler (stochastic DDIM, every step recorded), scored by the multi-scale reward, the rewards normalised
within each mask's samples (advantages), and the trainable parameters updated with the clipped importance ratio of
every recorded step's log-probability under the new weights against the one under the rollout weights.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm import tqdm

from ..data.datalist import read_datalist
from ..errors import Gem3dInputError
from ..io import new_figure, save_figure, save_json, save_torch
from ..networks.layer_gains import folded_state_dict
from ..sampling.synthesize import delivered

logger = logging.getLogger(__name__)


def mask_advantages(rewards: torch.Tensor, groups, eps: float = 1e-6) -> torch.Tensor:
    """Each reward minus the mean of the rewards of the same mask, over their standard deviation (the mask plays the
    prompt's role, so only the differences between samples of one mask teach the policy anything)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    groups = np.asarray(groups)
    out = torch.zeros_like(rewards)
    for g in np.unique(groups):
        idx = torch.from_numpy(np.nonzero(groups == g)[0])
        if len(idx) < 2:
            raise Gem3dInputError("advantages per mask need at least 2 samples of every mask (samples_per_mask >= 2)")
        r = rewards[idx]
        out[idx] = (r - r.mean()) / (r.std(unbiased=False) + eps)
    return out


def clipped_objective(logprob, old_logprob, advantages, clip_range: float):
    """PPO's clipped surrogate (to minimise) and its diagnostics: the approximate KL between the rollout and the
    current policy on the recorded steps, and the fraction of ratios outside the clip range."""
    ratio = torch.exp(logprob - old_logprob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            "approx_kl": float(0.5 * ((logprob - old_logprob) ** 2).mean()),
            "clip_fraction": float(((ratio - 1.0).abs() > clip_range).float().mean()),
        }
    return loss, stats


class RewardTuning:
    """What every reward fine-tuner of the window model shares: rollouts of whole volumes with the informed-slice
    specs in turn, the trainable parameters (the optimiser's), and the anchor to the starting weights with its drift.
    A batch is a list of datalist items with ``label`` (the mask) and ``image`` (for the true informed slice)."""

    def __init__(
        self,
        synthesizer,
        sampler,
        reward,
        optimizer,
        samples_per_mask: int = 4,
        max_grad_norm: float = 1.0,
        informed: dict | list | None = None,
        anchor_weight: float = 0.0,
        seed: int = 0,
    ):
        if int(samples_per_mask) < 1:
            raise Gem3dInputError(f"samples_per_mask must be >= 1, got {samples_per_mask}")
        self.synth, self.reward, self.optimizer = synthesizer, reward, optimizer
        self.sampler = sampler  # a RolloutSampler of the synthesizer's window model (rollout.rollout_sampler)
        self.samples_per_mask, self.max_grad_norm = int(samples_per_mask), float(max_grad_norm)
        # one informed-slice spec, or several that the masks of an iteration take in turn (so that a policy tuned on
        # true slices does not drift with another patient's); the synthesizer completes each with its own (pool etc.)
        self.informed = list(informed) if isinstance(informed, (list, tuple)) else [informed]
        self.seed = int(seed)
        # the weights at the start (stage 2): the anchor penalty pulls toward them at every update, so drift that a
        # noisy policy gradient builds up over iterations is bounded (the per-update ratio clip cannot see it)
        if float(anchor_weight) < 0:
            raise Gem3dInputError(f"anchor_weight must be >= 0, got {anchor_weight}")
        self.anchor_weight = float(anchor_weight)
        self.set_anchor([p.detach().clone() for p in self.params])

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        """The anchor, saved with the run's checkpoints: a resumed run keeps pulling toward the weights it started
        from, even if the stage-2 file has changed since."""
        return {"anchor": [a.clone() for a in self.anchor]}

    def load_state_dict(self, state: dict) -> None:
        anchor = state["anchor"]
        if [a.shape for a in anchor] != [p.shape for p in self.params]:
            raise Gem3dInputError("the checkpoint's anchor does not match the trainable parameters of this policy")
        self.set_anchor([a.to(p.device, p.dtype) for a, p in zip(anchor, self.params)])

    def set_anchor(self, anchor: list[torch.Tensor]) -> None:
        """The weights the penalty pulls toward, with their squared norm (the drift's scale)."""
        self.anchor = anchor
        self.anchor_norm2 = float(sum(a.pow(2).sum() for a in anchor)) or 1.0

    def drift(self) -> torch.Tensor:
        """Squared distance of the trainable weights from the starting ones, relative to the starting norm."""
        return sum((p - a).pow(2).sum() for p, a in zip(self.params, self.anchor)) / self.anchor_norm2

    @contextmanager
    def anchor_weights(self):
        """The trainable weights set to the anchor's (stage 2's) inside the block, and back on leaving it; no gradient
        flows inside. Only the trainable weights differ from stage 2, so the network is then stage 2's exactly."""
        with torch.no_grad():
            current = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.anchor):
                p.copy_(a)
            try:
                yield
            finally:
                for p, c in zip(self.params, current):
                    p.copy_(c)

    def jobs(self, iteration: int, batch: list[dict]):
        """(mask index, item, informed spec, seed) of every rollout of an iteration: each mask takes one spec, so the
        rollouts of a mask compare like with like, and the seeds differ between iterations."""
        for m, item in enumerate(batch):
            informed = self.informed[(iteration * len(batch) + m) % len(self.informed)]
            for k in range(self.samples_per_mask):
                yield m, item, informed, self.seed + 1_000_003 * iteration + self.samples_per_mask * m + k

    def anchored_step(self) -> float:
        """Add the anchor penalty's gradient, clip the gradient norm, step; returns the norm before clipping."""
        if self.anchor_weight > 0:
            torch.autograd.backward(self.anchor_weight * self.drift(), inputs=self.params)
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        self.optimizer.step()
        return norm

    def rollout(
        self, item: dict, seed: int, informed: dict | None = None, reward=None
    ) -> tuple[list, dict, np.ndarray]:
        """One whole volume for one mask: its recorded steps, its reward (with the reward's parts; ``reward``
        defaults to the one the policy trains on) and the volume as delivered; ``informed`` defaults to the first
        informed-slice spec."""
        informed = informed or self.informed[0]
        with self.synth.using_sampler(self.sampler):
            out = self.synth.generate_model_space(
                item["label"], seed, item.get("id", "case"), image_path=item.get("image"), informed=informed
            )
        image = delivered(out["image"], out["mask"], self.synth.zero_background)
        return self.sampler.trajectory, (reward or self.reward)(image, out["mask"]), image


class RewardFineTuner(RewardTuning):
    """The PPO iteration as an ignite process function (``Engine(RewardFineTuner(...))``): the rollouts of every mask
    scored, their rewards normalised per mask into advantages, and clipped importance-ratio updates."""

    def __init__(
        self,
        *args,
        clip_range: float = 1e-4,
        advantage_clip: float = 5.0,
        step_fraction: float = 0.5,
        updates_per_iteration: int = 2,
        **kwargs,
    ):
        """``args`` and ``kwargs``: ``RewardTuning``'s; the rest PPO's own."""
        super().__init__(*args, **kwargs)
        if self.samples_per_mask < 2:
            raise Gem3dInputError(
                f"samples_per_mask must be >= 2 (advantages are per mask), got {self.samples_per_mask}"
            )
        if not 0.0 < float(step_fraction) <= 1.0:
            raise Gem3dInputError(f"step_fraction must lie in (0, 1], got {step_fraction}")
        self.clip_range, self.advantage_clip = float(clip_range), float(advantage_clip)
        self.step_fraction, self.updates = float(step_fraction), int(updates_per_iteration)

    def __call__(self, engine, batch: list[dict]) -> dict:
        start = time.time()
        it = int(engine.state.iteration)
        rollouts, groups = [], []
        for m, item, informed, seed in self.jobs(it, batch):
            rollouts.append(self.rollout(item, seed, informed))
            groups.append(m)
        rewards = torch.tensor([r["reward"] for _, r, _ in rollouts])
        adv = mask_advantages(rewards, groups).clamp(-self.advantage_clip, self.advantage_clip)
        rollout_seconds = time.time() - start
        stats = self.update([traj for traj, _, _ in rollouts], adv, np.random.default_rng(self.seed + it))
        parts = [k for k in rollouts[0][1] if k != "reward"]
        out = {
            "loss": stats.pop("loss"),
            "reward": float(rewards.mean()),
            **{f"reward_{k}": float(np.mean([r[k] for _, r, _ in rollouts])) for k in parts},
            **stats,
            "rollout_seconds": rollout_seconds,
            "seconds": time.time() - start,
            # the rollouts themselves, for critics that learn from them (adversarial.AdversarialCritics)
            "volumes": [image for _, _, image in rollouts],
        }
        return out

    def update(self, trajectories: list[list], advantages: torch.Tensor, rng: np.random.Generator) -> dict:
        """``updates`` optimiser steps, each over a share of the rollouts and, per rollout, a random
        ``step_fraction`` of its recorded steps (DDPO's timestep fraction)."""
        order = rng.permutation(len(trajectories))
        losses, kls, clips, norms = [], [], [], []
        for share in np.array_split(order, min(self.updates, len(order))):
            chosen = []
            for i in share:
                traj = trajectories[i]
                keep = max(1, int(round(self.step_fraction * len(traj))))
                chosen += [(traj[j], advantages[i]) for j in sorted(rng.choice(len(traj), keep, replace=False))]
            self.optimizer.zero_grad(set_to_none=True)
            for step, adv in chosen:
                logprob = self.sampler.logprob(step)
                loss, s = clipped_objective(logprob, step.logprob, adv.expand_as(logprob), self.clip_range)
                (loss / len(chosen)).backward()
                losses.append(float(loss.detach()))
                kls.append(s["approx_kl"])
                clips.append(s["clip_fraction"])
            norms.append(self.anchored_step())
        return {
            "loss": float(np.mean(losses)),
            "approx_kl": float(np.mean(kls)),
            "clip_fraction": float(np.mean(clips)),
            "grad_norm": float(np.mean(norms)),
            "drift": float(self.drift().detach()) ** 0.5,  # relative distance from the start, after the updates
        }


def fixed_rollout_scores(tuner: RewardTuning, items: list[dict], repeats: int, seed: int, reward=None) -> list[dict]:
    """The reward parts of every item ``repeats`` times with the rollout sampler under fixed seeds: the same draws for
    any weights, so that two weight files (or two iterations) are compared on equal terms. The items take the tuner's
    informed-slice specs in turn, as the masks of a fine-tuning iteration do. ``reward``: another reward than the
    tuner's (a fixed one, where the tuner's critics keep learning)."""
    jobs = [(r, i, item) for r in range(int(repeats)) for i, item in enumerate(items)]
    rows = []
    for r, i, item in tqdm(jobs, desc=f"scoring {tuner.synth.weights_name} rollouts", unit="volume"):
        _, scores, _ = tuner.rollout(item, seed + r * len(items) + i, tuner.informed[i % len(tuner.informed)], reward)
        rows.append({"case": item["id"], "repeat": r, **scores})
    return rows


def score_rollouts(
    tuner: RewardTuning, datalist: str, section: str, repeats: int, output: str, seed: int = 0, real=None
):
    """The reward (and its parts) of the window weights in use on every mask of a datalist section, ``repeats`` times
    (``fixed_rollout_scores``). Writes and returns {"mean": {part: value}, "per_volume": [...]}, and with ``real``
    (model-space volumes, ``critic_data.real_volumes``) "real": the same reward of those volumes, the reference a
    generated volume's reward is read against (a reward can only be compared with itself, never across critics)."""
    rows = fixed_rollout_scores(tuner, read_datalist(datalist, (section,))[section], repeats, seed)
    parts = [k for k in rows[0] if k not in ("case", "repeat")]
    result = {
        "weights": tuner.synth.weights_name,
        "mean": {k: float(np.mean([row[k] for row in rows])) for k in parts},
        "per_volume": rows,
    }
    if real:
        scored = [tuner.reward(np.asarray(v["image"], np.float32)[0], np.asarray(v["label"])[0]) for v in real]
        result["real"] = {k: float(np.mean([s[k] for s in scored])) for k in scored[0]}
    save_json(result, output, overwrite=True)
    return result


class BestRewardKeeper:
    """Writes the policy's weights only when its mean reward on fixed held-out masks and seeds beats every earlier
    check, the starting (stage-2) weights included: a run whose policy only drifts writes nothing, and the weights
    already in place stay. Checks every ``interval`` iterations and at the end; the history (and with it a resumed
    run's best) lives in ``history_file``, with a PNG beside it. Without held-out masks it writes the final weights.
    ``reward``: what the checks score (default: the tuner's reward); a fixed one where the tuner's critics learn
    while the policy moves (``adversarial.AdversarialCritics``), whose values do not compare across iterations."""

    def __init__(
        self,
        tuner: RewardTuning,
        items: list[dict],
        policy,
        weights_file: str,
        history_file: str,
        interval: int = 4,
        repeats: int = 1,
        seed: int = 0,
        reward=None,
    ):
        self.tuner, self.items, self.policy, self.reward = tuner, list(items), policy, reward
        self.weights_file, self.history_file = weights_file, history_file
        self.interval, self.repeats, self.seed = int(interval), int(repeats), int(seed)
        self.history: list[list] = []  # [iteration, mean reward, kept]

    def attach(self, engine) -> None:
        """Attach after the checkpoint loader, so that a resumed run does not score the loaded weights as the start."""
        from ignite.engine import Events

        if not self.items:
            engine.add_event_handler(Events.COMPLETED, lambda _: self.save())
            return
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.check)
        engine.add_event_handler(Events.COMPLETED, self.check_last)

    def save(self) -> None:
        save_torch(folded_state_dict(self.policy), self.weights_file, True)  # layer gains, if any, folded in

    @property
    def best(self) -> float:
        return max(r for _, r, _ in self.history)

    def score(self) -> float:
        rows = fixed_rollout_scores(self.tuner, self.items, self.repeats, self.seed, self.reward)
        return float(np.mean([row["reward"] for row in rows]))

    def start(self, engine) -> None:
        if os.path.isfile(self.history_file):
            with open(self.history_file) as f:
                self.history = [list(r) for r in json.load(f)["history"]]
        if not self.history:
            self.history.append([0, self.score(), False])  # the starting weights: the bar to beat
            self.write()

    def check(self, engine) -> None:
        it = int(engine.state.iteration)
        if any(i == it for i, _, _ in self.history):
            return
        value = self.score()
        kept = value > self.best
        if kept:
            self.save()
        logger.info(
            f"held-out reward at iteration {it}: {value:.4f} (best {max(value, self.best):.4f})"
            + (f", weights written to {self.weights_file}" if kept else ", weights not kept")
        )
        self.history.append([it, value, kept])
        self.write()

    def check_last(self, engine) -> None:
        self.check(engine)
        if not any(kept for _, _, kept in self.history):
            logger.warning(
                f"no iteration beat the starting weights on the held-out reward; {self.weights_file} was not written"
            )

    def write(self) -> None:
        save_json({"history": self.history, "weights_file": self.weights_file}, self.history_file, overwrite=True)
        arr = np.asarray([[i, r] for i, r, _ in self.history], dtype=float)
        fig, ax = new_figure(figsize=(5, 3.2))
        ax.plot(arr[:, 0], arr[:, 1], marker="o")
        kept = [(i, r) for i, r, k in self.history if k]
        if kept:
            ax.scatter(*zip(*kept), color="tab:green", zorder=3, label="weights kept")
            ax.legend()
        ax.axhline(self.history[0][1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("iteration")
        ax.set_title("held-out reward (fixed masks and seeds)")
        fig.tight_layout()
        save_figure(fig, os.path.splitext(self.history_file)[0] + ".png", overwrite=True)
