"""Reward fine-tuning of the window model (DDPO-style PPO on the denoising chain): critics, rewards, the PPO step."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
