"""scripts/bf16_parity.py: paired bf16 - fp32 differences with their 95 % t interval, read from the sweep's run
directories; the script refuses to start on a CPU without native bf16 units unless --force."""

from __future__ import annotations

import csv
import json

import pytest

from al_runner import platform
from tests.conftest import load_script

parity = load_script("bf16_parity")

# 5 seeds of one sampler: bf16 - fp32 accuracy differences +0.01, -0.01, +0.02, 0.00, +0.03
FP32 = [0.50, 0.52, 0.48, 0.51, 0.49]
BF16 = [0.51, 0.51, 0.50, 0.51, 0.52]


def rows(sampler="learning_loss", cpu="Intel Xeon"):
    out = []
    for seed, (a, b) in enumerate(zip(FP32, BF16)):
        out.append(
            {
                "sampler": sampler,
                "seed": seed,
                "precision": "fp32",
                "accuracy": a,
                "ranking accuracy": 0.6,
                "cpu_model": cpu,
                "bf16_units": "amx_bf16",
            }
        )
        out.append(
            {
                "sampler": sampler,
                "seed": seed,
                "precision": "bf16",
                "accuracy": b,
                "ranking accuracy": 0.6 + 0.01 * (seed % 2),
                "cpu_model": cpu,
                "bf16_units": "amx_bf16",
            }
        )
    return out


def test_paired_difference_mean_and_t_interval_known_answer():
    result = {r["metric"]: r for r in parity.paired_differences(rows())}
    acc = result["accuracy"]
    # mean 0.01; sd of the differences sqrt(0.001 / 4) = 0.0158114; t(0.975, 4) = 2.776445; half-width 0.0196324
    assert acc["n"] == 5 and acc["diff_mean"] == pytest.approx(0.01)
    assert acc["diff_sd"] == pytest.approx(0.0158114, abs=1e-7)
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx((0.01 - 0.0196324, 0.01 + 0.0196324), abs=1e-6)
    assert acc["fp32_mean"] == pytest.approx(0.50) and acc["fp32_sd"] == pytest.approx(0.0158114, abs=1e-7)
    # paired t = 0.01 / 0.0070711 = sqrt(2) on 4 df; closed form for 4 df, a = t / sqrt(4 + t^2):
    # two-sided p = 2 (1 - (1/2 + 3a/4 - a^3/4)) = 0.230200
    assert acc["p"] == pytest.approx(0.230200, abs=1e-6)
    assert acc["ci_within_fp32_spread"] is False  # +0.0296 > 0.0158
    rank = result["ranking accuracy"]  # differences 0, .01, 0, .01, 0
    assert rank["diff_mean"] == pytest.approx(0.004)
    assert (
        "| learning_loss | accuracy | 5 | 0.5000 ± 0.0158 | 0.5100 ± 0.0071 | +0.0100 (-0.0096 … +0.0296) |"
        in parity.table(parity.paired_differences(rows()))
    )


def test_only_seeds_with_both_precisions_are_paired():
    table = [r for r in rows() if not (r["seed"] == 4 and r["precision"] == "bf16")]
    acc = next(r for r in parity.paired_differences(table) if r["metric"] == "accuracy")
    assert acc["n"] == 4 and acc["diff_mean"] == pytest.approx((0.01 - 0.01 + 0.02 + 0.0) / 4)


def write_run(sweep, name, sampler, seed, amp, value, ranking, cpu="Intel Xeon"):
    run = sweep / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"seed: {seed}\nsampler:\n  name: {sampler}\nruntime:\n  amp: {str(amp).lower()}\n"
    )
    (run / "platform.json").write_text(json.dumps({"cpu_model": cpu, "bf16_units": "amx_bf16"}))
    with open(run / "cycles.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cycle", "value", "ranking_accuracy"])
        w.writerow([0, value, ranking])


def test_runs_are_read_from_the_sweep_and_the_table_printed(tmp_path, capsys):
    sweep = tmp_path / "outputs" / "bf16_parity"
    for seed, (a, b) in enumerate(zip(FP32, BF16)):
        write_run(sweep, f"r-fp32-{seed}", "random", seed, False, a, "")
        write_run(sweep, f"r-bf16-{seed}", "random", seed, True, b, "")
    got = parity.collect(sweep)
    assert len(got) == 10 and {r["precision"] for r in got} == {"fp32", "bf16"}
    assert parity.main(["--analyse-only", "--output", str(tmp_path / "outputs")]) == 0
    out = capsys.readouterr().out
    assert "| random | accuracy | 5 | 0.5000 ± 0.0158 |" in out and "ranking accuracy" not in out.split("\n\n", 1)[1]
    write_run(sweep, "other-cpu", "random", 9, False, 0.5, "", cpu="AMD EPYC")
    assert parity.main(["--analyse-only", "--output", str(tmp_path / "outputs")]) == 1
    assert "must not mix CPU types" in capsys.readouterr().err


def test_refuses_to_start_without_bf16_units_unless_forced(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(platform, "cpu_flags", lambda cpuinfo=None: frozenset({"avx2", "fma"}))
    started = []
    monkeypatch.setattr(parity.subprocess, "run", lambda *a, **k: started.append(a) or type("P", (), {"returncode": 0}))
    assert parity.main(["--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refused: this CPU") and err.count("\n") == 1 and not started
    parity.main(["--force", "--output", str(tmp_path)])  # forced: the sweep starts (here: a stand-in)
    assert started and "runtime.amp=false,true" in started[0][0] and "schedule.cycles=1" in started[0][0]


def test_the_committed_parity_table_is_what_the_committed_runs_give(tmp_path):
    """outputs/reference/bf16_parity/parity.md (docs/benchmarks.md quotes it) recomputed from the committed runs."""
    from pathlib import Path

    reference = Path(__file__).resolve().parent.parent / "outputs" / "reference"
    out = tmp_path / "parity.md"
    assert parity.main(["--analyse-only", "--output", str(reference), "--name", "bf16_parity", "--out", str(out)]) == 0
    assert out.read_text() == (reference / "bf16_parity" / "parity.md").read_text()
    assert len(parity.collect(reference / "bf16_parity")) == 20  # 5 seeds x 2 samplers x 2 precisions
