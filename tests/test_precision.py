"""The precision is decided by the hardware: bf16 only where the device runs it natively, fp32 elsewhere."""

import pytest
import scripts.precision as precision
from scripts.errors import Gem3dInputError


def _cpu(monkeypatch, **flags):
    features = {"model": "test CPU", "capability": "AVX2", "avx2": True, "avx512": False, "threads": 2}
    features.update({"avx512_bf16": False, "amx": False, **flags})
    monkeypatch.setattr(precision, "cpu_features", lambda: features)


def test_auto_picks_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    _cpu(monkeypatch)
    used, why = precision.resolve_precision("auto", "cpu")
    assert used == "fp32" and why.startswith("auto: ") and "emulated" in why and "AVX2" in why


@pytest.mark.parametrize("flag, name", [("avx512_bf16", "AVX-512 BF16"), ("amx", "AMX")])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(monkeypatch, flag, name):
    _cpu(monkeypatch, **{flag: True})
    used, why = precision.resolve_precision("auto", "cpu")
    assert used == "bf16" and name in why


def test_auto_on_cuda_follows_the_device(monkeypatch):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "get_device_name", lambda d=None: "Fake GPU")
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve_precision("auto", "cuda:0") == ("bf16", "auto: Fake GPU supports bf16")
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.resolve_precision("auto", "cuda:0")[0] == "fp32"


def test_explicit_choices_are_kept_and_unknown_ones_refused(monkeypatch):
    _cpu(monkeypatch)
    assert precision.resolve_precision("bf16", "cpu") == ("bf16", "set explicitly")
    assert precision.resolve_precision("fp32", "cpu") == ("fp32", "set explicitly")
    with pytest.raises(Gem3dInputError, match="precision must be one of"):
        precision.resolve_precision("fp16", "cpu")


def test_cpu_features_of_this_machine_are_reported():
    f = precision.cpu_features()
    assert set(f) >= {"model", "capability", "avx2", "avx512", "avx512_bf16", "amx", "threads"}
    assert precision.cpu_summary().startswith(f["model"])
