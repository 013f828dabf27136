"""Paired differences per floating-point path (al_runner.analysis.paths): known answers on synthetic seeds."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from al_runner.analysis.aubc import t_interval
from al_runner.analysis.paths import UNRECORDED, paired_by_path, path_label


def per_run(differences: dict[int, tuple[float, str, str]]) -> pd.DataFrame:
    """Seed -> (a − b, a's path, b's path); b's value is 0.5 on every seed."""
    rows = []
    for seed, (diff, path_a, path_b) in differences.items():
        rows.append({"task": "t", "model": "m", "sampler": "a", "seed": seed, "value": 0.5 + diff, "path": path_a})
        rows.append({"task": "t", "model": "m", "sampler": "b", "seed": seed, "value": 0.5, "path": path_b})
    return pd.DataFrame(rows)


def test_path_label_reads_the_device_isa_and_precision():
    assert path_label(None) == UNRECORDED
    cpu = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "precision": "fp32", "threads": 1}
    assert path_label(cpu) == "AMD EPYC, AVX2, fp32"
    cuda = {"device": "cuda", "gpu": "NVIDIA H100", "precision": "bf16", "cuda": "13.0"}
    assert path_label(cuda) == "NVIDIA H100, bf16"


def test_each_path_gets_its_own_mean_interval_and_the_anova_compares_them():
    table = paired_by_path(
        per_run(
            {0: (0.01, "A", "A"), 1: (0.02, "A", "A"), 2: (0.03, "A", "A"), 3: (0.05, "B", "B"), 4: (0.07, "B", "B")}
        ),
        ["a", "b"],
    )
    assert table["path"].tolist() == ["A", "B"]
    a, b = table.set_index("path").loc["A"], table.set_index("path").loc["B"]
    assert (a["n_seeds"], a["seeds"], b["n_seeds"], b["seeds"]) == (3, "0,1,2", 2, "3,4")
    assert a["mean_diff"] == pytest.approx(0.02) and b["mean_diff"] == pytest.approx(0.06)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(t_interval(0.02, 0.01, 3))
    expected = stats.f_oneway([0.01, 0.02, 0.03], [0.05, 0.07]).pvalue
    assert table["p_between_paths"].tolist() == pytest.approx([expected, expected])
    assert expected < 0.05  # the two paths disagree about the difference here


def test_a_seed_with_runs_on_two_paths_is_shown_apart_and_tested_with_none():
    seeds = {0: (0.01, "A", "A"), 1: (0.03, "A", "A"), 2: (0.02, "B", "B"), 3: (0.04, "B", "B"), 4: (0.9, "A", "B")}
    table = paired_by_path(per_run(seeds), ["a", "b"]).set_index("path")
    assert table.loc["mixed: A / B", "n_seeds"] == 1 and math.isnan(table.loc["mixed: A / B", "ci_low"])
    expected = stats.f_oneway([0.01, 0.03], [0.02, 0.04]).pvalue  # seed 4's 0.9 would change it
    assert table["p_between_paths"].tolist() == pytest.approx([expected] * 3)


def test_no_test_without_two_paths_of_two_seeds():
    one_path = paired_by_path(per_run({0: (0.01, "A", "A"), 1: (0.02, "A", "A")}), ["a", "b"])
    assert one_path.empty  # nothing to split
    thin = paired_by_path(per_run({0: (0.01, "A", "A"), 1: (0.02, "A", "A"), 2: (0.5, UNRECORDED, UNRECORDED)}))
    assert len(thin) == 2 and thin["p_between_paths"].isna().all()
