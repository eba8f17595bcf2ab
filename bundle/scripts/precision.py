"""Which precision the denoising UNet runs in, decided by the hardware (never by a fixed default).

bf16 autocast pays only where the device computes bf16 natively: a CUDA device that supports it, or a CPU with
AVX-512 BF16 or AMX. Elsewhere (an AVX2-only CPU) PyTorch emulates bf16 and one window forward is about 13x slower
than fp32, so ``auto`` picks fp32 there. ``fp32`` and ``bf16`` stay available as explicit choices.
"""

from __future__ import annotations

import functools
import platform

import torch

from .errors import Gem3dInputError

PRECISIONS = ("auto", "fp32", "bf16")


def _cpuinfo() -> tuple[str, set]:
    """Model name and feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not flags:
                    model = value.strip()
                if key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def _amx_ready() -> bool:
    # torch 2.13 reports AMX (and asks the kernel for the tile state) only through this private call; it has no
    # public query for AVX-512 BF16, which is read from the kernel's CPU flags instead
    init = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    try:
        return bool(init()) if callable(init) else False
    except RuntimeError:
        return False


@functools.lru_cache(maxsize=None)
def cpu_features() -> dict:
    """The CPU facts that decide the precision and explain benchmark figures."""
    model, flags = _cpuinfo()
    return {
        "model": model,
        "capability": torch.backends.cpu.get_cpu_capability(),  # the widest vector ISA torch's kernels use
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags and _amx_ready(),
        "threads": torch.get_num_threads(),
    }


def cpu_summary() -> str:
    """One line for benchmark reports, e.g. 'Intel Xeon ... (AVX512, avx512_bf16, amx; 2 threads)'."""
    f = cpu_features()
    flags = [k for k in ("avx2", "avx512", "avx512_bf16", "amx") if f[k]]
    return f"{f['model']} (torch capability {f['capability']}; {', '.join(flags) or 'no AVX2'}; {f['threads']} threads)"


def native_bf16(device) -> tuple[bool, str]:
    """Whether ``device`` runs bf16 natively, and why (for the record)."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "unavailable CUDA device"
        return ok, f"{name} {'supports' if ok else 'lacks'} bf16"
    if device.type == "cpu":
        f = cpu_features()
        if f["amx"] or f["avx512_bf16"]:
            which = " and ".join(n for n, k in (("AMX", "amx"), ("AVX-512 BF16", "avx512_bf16")) if f[k])
            return True, f"CPU has {which}"
        return False, f"CPU lacks AVX-512 BF16 and AMX (capability {f['capability']}): bf16 would be emulated"
    return False, f"no native bf16 known for device type {device.type!r}"


def resolve_precision(requested: str, device) -> tuple[str, str]:
    """Map ``auto`` / ``fp32`` / ``bf16`` to the precision to run and the reason, for printing and records."""
    requested = str(requested)
    if requested not in PRECISIONS:
        raise Gem3dInputError(f"precision must be one of {list(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "set explicitly"
    ok, why = native_bf16(device)
    return ("bf16" if ok else "fp32"), f"auto: {why}"
