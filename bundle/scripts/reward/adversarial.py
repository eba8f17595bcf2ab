"""Critics that keep learning while the policy moves: the adversarial half of reward fine-tuning.

A critic trained once, on the volumes of the starting weights, ranks only the volumes near those: the policy finds a
direction in which the critic extrapolates and is paid for it (BENCHMARKS, "Reward fine-tuning": the gain sweep and
the hardened critics). Here the reward's critics take a few discriminator steps after every PPO iteration, on that
iteration's own rollouts (generated, target 0) against real training volumes (target 1), as a GAN's discriminator
does, so a texture that a fixed critic likes stops paying as soon as the policy produces it. Volumes go to the
critics exactly as the reward scores them (``critic_data.critic_inputs``, with the reward's ``min_foreground``). The
critics' weights and optimiser states are part of the run's checkpoint, so a resumed run continues with the critics
it had.

The reward that trains the policy then changes from iteration to iteration and cannot rank iterations; the held-out
check (``BestRewardKeeper``) scores with a reward of its own, whose critics stay fixed.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..errors import Gem3dInputError
from ..io import save_torch
from .critic_data import stacked_inputs

logger = logging.getLogger(__name__)


class AdversarialCritics:
    """``reward``: the ``MultiScaleReward`` the policy is trained on (its critics with weight > 0 train);
    ``real``: model-space real volumes ([{"image": (1, S, S, Z)}], ``critic_data.real_volumes``); ``steps``
    discriminator steps per PPO iteration (0: the critics stay fixed and nothing here runs), each on ``batch_size``
    generated and as many real inputs; the final critics are written to ``output_dir``/critic_<kind>.pt."""

    def __init__(
        self,
        reward,
        real: list[dict],
        steps: int = 0,
        lr: float = 1e-4,
        batch_size: int = 32,
        output_dir: str | None = None,
        seed: int = 0,
    ):
        if int(steps) < 0 or int(batch_size) < 1 or float(lr) <= 0:
            raise Gem3dInputError(
                f"adversarial critics need steps >= 0, batch_size >= 1 and lr > 0 (got {steps}, {batch_size}, {lr})"
            )
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)
        if self.steps and not real:
            raise Gem3dInputError("adversarial critics need real volumes to learn from (none were given)")
        if self.steps and getattr(reward, "fixed_critics", False):
            raise Gem3dInputError(
                f"{type(reward).__name__} measures against its critics' features as they are: "
                "set reward_adversarial_steps 0"
            )
        self.reward, self.real, self.output_dir = reward, list(real), output_dir
        self.rng = np.random.default_rng(int(seed))
        self.kinds = list(reward.weights) if self.steps else []
        self._optimizers: dict = {}
        self._real_inputs: dict = {}

    def critic(self, kind: str) -> torch.nn.Module:
        return self.reward.critics[kind]

    def optimizer(self, kind: str) -> torch.optim.Optimizer:
        if kind not in self._optimizers:
            self._optimizers[kind] = torch.optim.AdamW(self.critic(kind).parameters(), lr=self.lr, weight_decay=1e-4)
        return self._optimizers[kind]

    def real_inputs(self, kind: str) -> torch.Tensor:
        """Every real volume's inputs for a critic of ``kind``, computed once."""
        if kind not in self._real_inputs:
            images = [np.asarray(v["image"], np.float32)[0] for v in self.real]
            self._real_inputs[kind] = stacked_inputs(images, kind, self.reward.min_foreground)
        return self._real_inputs[kind]

    def _batch(self, inputs: torch.Tensor) -> torch.Tensor:
        idx = self.rng.choice(len(inputs), min(self.batch_size, len(inputs)), replace=False)
        return inputs[torch.from_numpy(np.sort(idx))]

    def update(self, volumes: list[np.ndarray]) -> dict:
        """``steps`` discriminator steps per critic on ``volumes`` (generated, (S, S, Z) each, as delivered) against
        real volumes. Returns, per critic, the mean loss and the mean logits of both sides before the steps (the
        gap the critic had on these rollouts)."""
        stats = {}
        for kind in self.kinds:
            fake = stacked_inputs(volumes, kind, self.reward.min_foreground)
            if not len(fake):
                continue
            net, opt = self.critic(kind), self.optimizer(kind)
            device = next(net.parameters()).device
            losses, gaps = [], []
            net.train()
            for _ in range(self.steps):
                x_fake, x_real = self._batch(fake).to(device), self._batch(self.real_inputs(kind)).to(device)
                logits_fake, logits_real = net(x_fake), net(x_real)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits_fake, torch.zeros_like(logits_fake)
                ) + torch.nn.functional.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                gaps.append(float(logits_real.detach().mean() - logits_fake.detach().mean()))
            net.eval()
            stats[f"critic_{kind}_loss"] = float(np.mean(losses))
            stats[f"critic_{kind}_gap"] = float(gaps[0])
        return stats

    def attach(self, engine) -> None:
        """After every iteration, a discriminator step on its rollouts (``engine.state.output["volumes"]``); the
        critics are written at the end. Nothing is attached when ``steps`` is 0."""
        from ignite.engine import Events

        if not self.steps:
            return
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.on_iteration)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.save())

    def on_iteration(self, engine) -> None:
        volumes = engine.state.output.pop("volumes", None)
        if not volumes:
            raise Gem3dInputError("adversarial critics need the iteration's rollout volumes in its output")
        engine.state.output.update(self.update(volumes))

    def save(self) -> None:
        if not self.output_dir:
            return
        for kind in self.kinds:
            path = os.path.join(self.output_dir, f"critic_{kind}.pt")
            save_torch(self.critic(kind).state_dict(), path, overwrite=True)
            logger.info(f"adversarial {kind} critic written to {path}")

    def state_dict(self) -> dict:
        """The critics and their optimisers, for the run's checkpoint (a resumed run continues with them)."""
        return {
            "critics": {k: self.critic(k).state_dict() for k in self.kinds},
            "optimizers": {k: self.optimizer(k).state_dict() for k in self.kinds},
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if sorted(state.get("critics", {})) != sorted(self.kinds):
            raise Gem3dInputError(
                f"the checkpoint's adversarial critics {sorted(state.get('critics', {}))} are not this run's "
                f"{sorted(self.kinds)}"
            )
        for kind in self.kinds:
            self.critic(kind).load_state_dict(state["critics"][kind])
            self.optimizer(kind).load_state_dict(state["optimizers"][kind])
        self.rng.bit_generator.state = state["rng"]
