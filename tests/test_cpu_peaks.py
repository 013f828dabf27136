"""The CPU's theoretical fp32 and bf16 peaks (benchmark 8) follow from its flags, clock and core count, with the
instruction-throughput assumptions of benchmarks/precision.py; known answers on fixed flag sets."""

from __future__ import annotations

import math

import pytest

from al_runner import platform
from benchmarks.precision import AMX_BF16_FLOP_PER_CYCLE, derive_peaks, lscpu_max_mhz, parse_cpuinfo

SAPPHIRE_RAPIDS = {"fma", "avx", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
COOPER_LAKE = {"fma", "avx", "avx2", "avx512f", "avx512_bf16"}
ZEN3 = {"fma", "avx", "avx2"}
ZEN4 = {"fma", "avx", "avx2", "avx512f", "avx512_bf16"}


def test_amx_is_one_tdpbf16ps_every_16_cycles():
    # 16 x 16 x 32 bf16 FMAs = 16,384 FLOP per instruction, one per 16 cycles per core
    assert AMX_BF16_FLOP_PER_CYCLE == 1024


@pytest.mark.parametrize(
    "flags, vendor, family, model, mhz, cores, fp32, bf16, units",
    [
        # Intel Xeon with AMX: 2 x 512-bit FMA (64 FLOP/cycle), AMX 1,024 FLOP/cycle; 2 cores at 2.0 GHz
        (SAPPHIRE_RAPIDS, "GenuineIntel", 6, 143, 2000.0, 2, 256.0, 4096.0, "amx_bf16"),
        # AVX-512 BF16 without AMX: vdpbf16ps at the FMA rate = 2 x fp32
        (COOPER_LAKE, "GenuineIntel", 6, 85, 1000.0, 1, 64.0, 128.0, "avx512_bf16"),
        # this project's AMD EPYC (Zen 3, AVX2): 32 FLOP/cycle, no native bf16
        (ZEN3, "AuthenticAMD", 25, 1, 2445.426, 1, 78.253632, math.nan, "none"),
        # Zen 4: AVX-512 double-pumped on 256-bit pipes (32 FLOP/cycle); its AVX-512 BF16 twice that
        (ZEN4, "AuthenticAMD", 25, 17, 1000.0, 4, 128.0, 256.0, "avx512_bf16"),
        # Zen 1: 128-bit FMA pipes
        (ZEN3, "AuthenticAMD", 23, 1, 1000.0, 1, 16.0, math.nan, "none"),
        # AVX without FMA (Sandy Bridge): one 256-bit multiply + one add port
        ({"avx"}, "GenuineIntel", 6, 42, 1000.0, 1, 16.0, math.nan, "none"),
        ({"sse2"}, "", None, None, 1000.0, 1, 8.0, math.nan, "none"),
    ],
)
def test_peaks_from_flags_clock_and_cores(flags, vendor, family, model, mhz, cores, fp32, bf16, units):
    peaks = derive_peaks(frozenset(flags), mhz, cores, vendor=vendor, family=family, model=model)
    assert peaks.fp32_gflops == pytest.approx(fp32)
    assert peaks.bf16_units == units == platform.bf16_units(flags)
    if math.isnan(bf16):
        assert peaks.bf16_per_cycle is None and math.isnan(peaks.bf16_gflops) and "emulated" in peaks.bf16_basis
    else:
        assert peaks.bf16_gflops == pytest.approx(bf16)
    assert peaks.peak("fp32") == peaks.fp32_gflops


CPUINFO = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 1
model name	: AMD EPYC
cpu MHz		: 2445.426
flags		: fpu fma avx avx2

processor	: 1
vendor_id	: GenuineIntel
cpu family	: 6
cpu MHz		: 9999.0
flags		: amx_bf16
"""


def test_cpuinfo_and_lscpu_are_read_from_the_first_processor_and_max_mhz():
    assert parse_cpuinfo(CPUINFO) == {"vendor": "AuthenticAMD", "family": 25, "model": 1, "mhz": 2445.426}
    assert platform.cpu_flags(CPUINFO) == frozenset({"fpu", "fma", "avx", "avx2"})
    assert platform.cpu_flags("Features\t: fp asimd bf16\n") == frozenset({"fp", "asimd", "bf16"})
    assert lscpu_max_mhz("Model name: X\nCPU max MHz:                3800.0000\nCPU min MHz: 800\n") == 3800.0
    assert lscpu_max_mhz("Model name: AMD EPYC\nBogoMIPS: 4890.85\n") is None  # many VMs: no max clock


def test_bf16_units_best_first():
    assert platform.bf16_units({"avx512_bf16", "amx_bf16"}) == "amx_bf16"
    assert platform.bf16_units({"avx512_bf16"}) == "avx512_bf16"
    assert platform.bf16_units({"avx2", "amx_tile"}) == "none"  # AMX tiles without the bf16 TMUL
    assert platform.bf16_units(set()) == "none"
