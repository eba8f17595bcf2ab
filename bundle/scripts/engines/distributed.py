"""Process-group setup and teardown for jobs launched with ``torchrun`` (a no-op in a single process).

Configs call ``setup()`` as the first step of ``run`` and ``teardown()`` in ``finalize``. Setup is not in
``initialize`` because ``monai.bundle`` puts the bundle folder on ``sys.path`` only when ``run`` starts, and resolving
any config item first evaluates the ``$import scripts`` statement: run from outside the bundle folder, an
``initialize`` step would find no ``scripts`` package.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> bool:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs); True when there is one."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def teardown() -> None:
    """Leave the process group once every rank is done (a rank that leaves early can abort the others' gloo)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
