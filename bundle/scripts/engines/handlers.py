"""Ignite handlers gem3d adds to the MONAI trainers: a loss-curve PNG/JSON and optional resumption."""

from __future__ import annotations

import json
import logging
import os

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from ..io import new_figure, save_figure, save_json

logger = logging.getLogger(__name__)


class LossCurveHandler:
    """Records the training loss every iteration and validation metrics every epoch; writes a PNG and a JSON.

    The figures in ``bundle/docs`` come from these files, so what the README reports is what training printed.
    """

    def __init__(self, output_dir: str, name: str, validator: Engine | None = None, smooth: int = 50):
        self.output_dir, self.name, self.validator, self.smooth = output_dir, name, validator, smooth
        self.iterations: list[int] = []
        self.losses: list[float] = []
        self.val: dict[str, list] = {}
        path = os.path.join(output_dir, f"{name}_curve.json")
        if os.path.isfile(path):  # resumed runs extend the same curve
            with open(path) as f:
                old = json.load(f)
            self.iterations, self.losses, self.val = old["iterations"], old["loss"], old.get("validation", {})

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        if self.validator is not None:  # record each validation once, when it has run
            self.validator.add_event_handler(Events.COMPLETED, self._validated, engine)

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        loss = out[0]["loss"] if isinstance(out, list) else out["loss"]
        self.iterations.append(int(engine.state.iteration))
        self.losses.append(float(loss))

    def _validated(self, validator: Engine, trainer: Engine) -> None:
        for k, v in validator.state.metrics.items():
            if np.isscalar(v) or getattr(v, "ndim", 1) == 0:
                self.val.setdefault(k, []).append([int(trainer.state.iteration), float(v)])

    def _epoch(self, engine: Engine) -> None:
        self.write()

    def write(self) -> None:
        save_json(
            {"iterations": self.iterations, "loss": self.losses, "validation": self.val},
            os.path.join(self.output_dir, f"{self.name}_curve.json"),
            overwrite=True,
        )
        if not self.losses:
            return
        fig, axes = new_figure(1, 1 + len(self.val), figsize=(5 * (1 + len(self.val)), 3.5), squeeze=False)
        ax = axes[0, 0]
        ax.plot(self.iterations, self.losses, alpha=0.3, lw=0.6, label="loss")
        k = max(1, min(self.smooth, len(self.losses) // 5 or 1))
        smooth = np.convolve(self.losses, np.ones(k) / k, mode="valid")
        ax.plot(self.iterations[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{self.name}: training loss")
        ax.legend()
        for ax, (metric, pts) in zip(axes[0, 1:], self.val.items()):
            arr = np.asarray(pts)
            ax.plot(arr[:, 0], arr[:, 1], marker="o")
            ax.set_xlabel("iteration")
            ax.set_title(f"validation {metric}")
        fig.tight_layout()
        save_figure(fig, os.path.join(self.output_dir, f"{self.name}_curve.png"), overwrite=True)


class ScalarCurvesHandler:
    """Records chosen scalars of the engine's output every iteration (reward, KL, clip fraction of reward
    fine-tuning) and writes them as one PNG panel each plus a JSON; a resumed run extends the same curves."""

    def __init__(self, output_dir: str, name: str, keys, smooth: int = 5):
        self.output_dir, self.name, self.keys, self.smooth = output_dir, name, list(keys), int(smooth)
        self.path = os.path.join(output_dir, f"{name}_curves.json")
        self.curves: dict[str, list] = {k: [] for k in self.keys}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.curves.update(json.load(f))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)

    def _record(self, engine: Engine) -> None:
        for k in self.keys:
            if k in engine.state.output:
                self.curves[k].append([int(engine.state.iteration), float(engine.state.output[k])])
        self.write()

    def write(self) -> None:
        save_json(self.curves, self.path, overwrite=True)
        shown = [k for k in self.keys if self.curves[k]]
        if not shown:
            return
        fig, axes = new_figure(1, len(shown), figsize=(4 * len(shown), 3.2), squeeze=False)
        for ax, k in zip(axes[0], shown):
            arr = np.asarray(self.curves[k])
            ax.plot(arr[:, 0], arr[:, 1], alpha=0.4, lw=0.8, marker=".")
            n = max(1, min(self.smooth, len(arr)))
            ax.plot(arr[n - 1 :, 0], np.convolve(arr[:, 1], np.ones(n) / n, mode="valid"), lw=1.5)
            ax.set_xlabel("iteration")
            ax.set_title(k)
        fig.tight_layout()
        save_figure(fig, os.path.join(self.output_dir, f"{self.name}_curves.png"), overwrite=True)


class GradientClipHandler:
    """Clip the gradient norm of the trainer's trainable parameters between backward and the optimizer step
    (MONAI's ``IterationEvents.BACKWARD_COMPLETED``); MONAI's ``SupervisedTrainer`` has no clipping option."""

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = float(max_norm)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        params = [p for p in engine.network.parameters() if p.requires_grad and p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)


def set_learning_rate(engine: Engine, optimizer, lr: float) -> None:
    """Attached after the checkpoint loader: a resumed run trains with the learning rate of its own command line, not
    the one stored with the optimizer's state."""
    for group in optimizer.param_groups:
        group["lr"] = float(lr)


def checkpoint_handlers(stage_dir: str, state: dict, map_location="cpu") -> list:
    """Handlers that make a run resumable: load the newest checkpoint in ``stage_dir`` if there is one, and save
    the full training state there every epoch and at the end (or on an exception).

    They reference the trainer, so configs attach them after the trainer is built (a reference cycle otherwise).
    """
    import glob

    from monai.handlers import CheckpointLoader, CheckpointSaver

    handlers = []
    newest = _newest(glob.glob(os.path.join(stage_dir, "checkpoint*.pt")))
    if newest:
        logger.info(f"resuming from {newest}")
        handlers.append(CheckpointLoader(load_path=newest, load_dict=state, map_location=map_location))
    if idist.get_rank() > 0:
        return handlers  # one writer: rank 0 saves
    handlers.append(
        CheckpointSaver(
            save_dir=stage_dir,
            save_dict=state,
            save_interval=1,
            n_saved=1,
            save_final=True,
            final_filename="checkpoint_final.pt",
        )
    )
    return handlers


def _newest(paths: list[str]) -> str | None:
    return max(paths, key=os.path.getmtime) if paths else None
