"""precision: auto picks bf16 only where the device multiplies bf16 natively; bf16 elsewhere says what it costs."""
import torch

from scd import runtime
from scd.config import load_config, stage_config

CPU = torch.device("cpu")


def test_auto_follows_the_hardware(monkeypatch):
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(runtime, "native_bf16", lambda device_type, native=native: native)
        assert runtime.resolved_precision("auto", CPU) == expected
        assert runtime.resolved_precision("fp32", CPU) == "fp32"
        assert runtime.resolved_precision("bf16", CPU) == "bf16"
        ctx = runtime.autocast("auto", CPU)
        assert isinstance(ctx, torch.autocast) == (expected == "bf16")
        with ctx:
            out = torch.randn(2, 3) @ torch.randn(3, 2)
        assert out.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_bf16_without_native_support_warns_once(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "native_bf16", lambda device_type: False)
    monkeypatch.setattr(runtime, "_warned", False)
    for _ in range(2):
        with runtime.autocast("bf16", CPU):
            pass
    err = capsys.readouterr().err
    assert err.count("without native bf16") == 1 and "precision: auto" in err
    monkeypatch.setattr(runtime, "native_bf16", lambda device_type: True)
    monkeypatch.setattr(runtime, "_warned", False)
    with runtime.autocast("bf16", CPU):
        pass
    assert capsys.readouterr().err == ""


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    runtime.native_bf16.cache_clear()
    try:
        for flags, expected in (("fpu avx2 fma", False), ("fpu avx2 avx512f avx512_bf16", True), ("amx_bf16", True)):
            cpuinfo = tmp_path / "cpuinfo"
            cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
            monkeypatch.setattr(runtime, "Path", lambda p, f=cpuinfo: f)
            runtime.native_bf16.cache_clear()
            assert runtime.native_bf16("cpu") is expected
    finally:
        runtime.native_bf16.cache_clear()


def test_profiles_accept_auto():
    cfg = load_config("smollm2")
    assert cfg["precision"] == "auto"
    assert stage_config(load_config("default", {"precision": "auto"}), "synthetic_subdomains", "sft",
                        "teacher").precision == "auto"
