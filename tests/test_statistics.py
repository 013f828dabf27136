"""The statistics of al_runner.analysis against hand-computed values and scipy's / statsmodels' own answers
on fixed tables."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from al_runner.analysis.aubc import area_under_budget_curve, aubc_per_run, aubc_summary, common_last_cycle
from al_runner.analysis.efficiency import label_efficiency, labels_to_reach
from al_runner.analysis.paired import (
    aubc_tests,
    compare_pair,
    detectable_difference,
    detectable_effect_size,
    holm,
    paired_t_power,
    pairwise_tests,
    per_cycle_tests,
    seeds_for_power,
    significant_wins,
)
from al_runner.analysis.penalty import penalty_long, penalty_matrix
from al_runner.analysis.queries import class_balance, class_histograms, entropy_of_counts, pick_overlap


def test_the_analysis_package_imports_without_torch():
    code = (
        "import sys\n"
        "class NoTorch:\n"  # any `import torch` raises ImportError (as where torch is not installed)
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import al_runner.analysis, al_runner.analysis.aubc, al_runner.analysis.paired, al_runner.analysis.penalty, "
        "al_runner.analysis.efficiency, al_runner.analysis.queries, al_runner.analysis.paper, "
        "al_runner.analysis.summary\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- AUBC ------------------------------------------------------------------------------------------------
def test_aubc_is_the_trapezoid_area_over_the_budget_range():
    # (0.5 + 0.6) / 2 * 500 + (0.6 + 0.7) / 2 * 500 = 600 over a range of 1,000 -> 0.6
    assert area_under_budget_curve([1000, 1500, 2000], [0.5, 0.6, 0.7]) == pytest.approx(0.6)
    # uneven steps and unsorted input: (0.2 + 0.4) / 2 * 100 + (0.4 + 1.0) / 2 * 300 = 30 + 210 = 240 over 400
    assert area_under_budget_curve([400, 100, 0], [1.0, 0.4, 0.2]) == pytest.approx(0.6)
    assert math.isnan(area_under_budget_curve([1000], [0.5]))


def cycles_table(values: dict, n_labeled=(1000, 1500, 2000), task="t", model="m") -> pd.DataFrame:
    """{(sampler, seed): [value per cycle]} -> a load_cycles-like frame."""
    rows = []
    for (sampler, seed), series in values.items():
        for cycle, value in enumerate(series):
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "sampler": sampler,
                    "seed": seed,
                    "cycle": cycle,
                    "n_labeled": n_labeled[cycle],
                    "value": value,
                    "run_dir": f"/runs/{sampler}{seed}",
                }
            )
    return pd.DataFrame(rows)


def test_aubc_per_run_uses_the_cycles_every_run_reached():
    cycles = cycles_table({("random", 0): [0.5, 0.6, 0.7], ("entropy", 0): [0.5, 0.7]})  # entropy stopped at cycle 1
    assert common_last_cycle(cycles).tolist() == [1]
    per_run = aubc_per_run(cycles).set_index("sampler")
    assert per_run.loc["random", "aubc"] == pytest.approx(0.55)  # cycle 2 left out: (0.5 + 0.6) / 2
    assert per_run.loc["entropy", "aubc"] == pytest.approx(0.6)
    assert per_run.loc["random", "n_last"] == 1500
    summary = aubc_summary(aubc_per_run(cycles_table({("a", 0): [0.1, 0.3, 0.3], ("a", 1): [0.3, 0.5, 0.5]})))
    assert summary.loc[0, "mean"] == pytest.approx(0.35) and summary.loc[0, "std"] == pytest.approx(math.sqrt(0.02))


# --- paired tests ----------------------------------------------------------------------------------------
A = np.array([0.61, 0.58, 0.63, 0.60, 0.59])
B = np.array([0.59, 0.575, 0.60, 0.595, 0.58])


def test_paired_statistics_are_scipys_answers_and_the_hand_formulas():
    row = compare_pair(A, B)
    t, wilcoxon = stats.ttest_rel(A, B), stats.wilcoxon(A, B)
    assert row["t"] == pytest.approx(t.statistic) and row["p_t"] == pytest.approx(t.pvalue)
    assert row["w"] == pytest.approx(wilcoxon.statistic) and row["p_wilcoxon"] == pytest.approx(wilcoxon.pvalue)
    d = A - B  # [0.02, 0.005, 0.03, 0.005, 0.01]: mean 0.014, sd 0.010840...
    assert row["mean_diff"] == pytest.approx(0.014) and row["std_diff"] == pytest.approx(np.std(d, ddof=1))
    half_width = stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.014 - half_width, 0.014 + half_width))
    assert row["d_z"] == pytest.approx(0.014 / np.std(d, ddof=1))
    # all five differences positive: the exact Wilcoxon p is 2 / 2^5, the smallest 5 seeds can give
    assert row["p_wilcoxon"] == pytest.approx(2 / 32)


def power_of_paired_t(n: int, d_z: float, alpha=0.05) -> float:
    """Two-sided power from the noncentral t distribution, by hand."""
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = d_z * math.sqrt(n)
    return (1 - stats.nct.cdf(critical, n - 1, nc)) + stats.nct.cdf(-critical, n - 1, nc)


@pytest.mark.parametrize("d_z", [0.3, 0.5, 1.3])
def test_seeds_for_power_is_the_smallest_n_with_80_percent_power(d_z):
    n = seeds_for_power(d_z)
    assert power_of_paired_t(int(n), d_z) >= 0.8 > power_of_paired_t(int(n) - 1, d_z)
    assert seeds_for_power(-d_z) == n


def test_seeds_for_power_never_grows_with_the_effect_even_where_the_far_tail_underflows():
    # d_z 5.5 once needed "10 seeds" while 3.49 needed 3: the noncentral t's far tail returned NaN at some n
    effects = [0.2, 0.5, 1.0, 2.0, 2.43, 3.49, 4.0, 5.5, 6.01, 10.0, 20.0, 100.0]
    needed = [seeds_for_power(d) for d in effects]
    assert all(math.isfinite(n) for n in needed)
    assert needed == sorted(needed, reverse=True)
    assert seeds_for_power(5.5) == 3


@pytest.mark.parametrize("n", [2, 5, 20])
def test_detectable_difference_is_the_one_these_seeds_detect_with_80_percent_power(n):
    from statsmodels.stats.power import TTestPower

    d_z = detectable_effect_size(n)
    assert paired_t_power(d_z, n, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8) == pytest.approx(d_z, rel=1e-4)
    assert detectable_difference(0.02, n) == pytest.approx(0.02 * d_z)
    assert math.isnan(detectable_difference(float("nan"), n)) and math.isnan(detectable_effect_size(1))


def test_more_seeds_detect_smaller_differences():
    assert [round(detectable_effect_size(n), 3) for n in (5, 20)] == [1.682, 0.66]  # statsmodels' TTestPower


def test_a_compared_pair_reports_the_difference_its_seeds_detect():
    a, b = np.array([0.61, 0.60, 0.63, 0.59, 0.62]), np.array([0.60, 0.61, 0.60, 0.60, 0.60])
    row = compare_pair(a, b)
    assert row["detectable_diff"] == pytest.approx(np.std(a - b, ddof=1) * detectable_effect_size(5))


def test_paired_t_power_equals_statsmodels_wherever_statsmodels_gives_a_number():
    from statsmodels.stats.power import TTestPower

    compared = 0
    for d_z in (0.3, 1.0, 3.49, 5.5):
        for n in range(2, 30):
            theirs = TTestPower().power(effect_size=d_z, nobs=n, alpha=0.05, alternative="two-sided")
            ours = paired_t_power(d_z, n, 0.05)
            assert math.isfinite(ours) and 0 <= ours <= 1 + 1e-12
            if math.isfinite(theirs):
                assert ours == pytest.approx(theirs, abs=1e-9)
                compared += 1
    assert compared > 60


def test_holm_matches_the_hand_computed_step_down():
    p = pd.Series([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4, NaN out): 0.02, 0.03, max(0.06, 0.03) = 0.06, max(0.04, 0.06) = 0.06
    assert holm(p, 0.05).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm(p, 0.05)[3]) and holm(p, 0.05)[4] == pytest.approx(0.02)


def test_pairwise_tests_correct_within_the_family_and_skip_identical_pairs():
    values = pd.DataFrame(
        [("entropy", s, v) for s, v in enumerate(A)]
        + [("random", s, v) for s, v in enumerate(B)]
        + [("coreset", s, v) for s, v in enumerate(B)]  # identical to random on every seed
        + [("badge", s, v + e) for s, (v, e) in enumerate(zip(A, [0.01, -0.005, 0.02, 0.003])) if s < 4],  # no seed 4
        columns=["sampler", "seed", "value"],
    )
    table = pairwise_tests(values, ["random", "entropy", "coreset", "badge"]).set_index(["sampler_a", "sampler_b"])
    assert len(table) == 6
    same = table.loc[("random", "coreset")]
    assert math.isnan(same["p_t"]) and math.isnan(same["p_t_holm"]) and not same["significant"]
    known = table["p_t"].dropna()
    assert len(known) == 5  # the family Holm corrects: five real comparisons
    assert table["p_t_holm"].dropna().tolist() == pytest.approx(holm(table["p_t"], 0.05).dropna().tolist())
    entropy_vs_random = table.loc[("random", "entropy")]
    assert entropy_vs_random["mean_diff"] == pytest.approx(-0.014)  # random - entropy
    assert entropy_vs_random["p_t"] == pytest.approx(stats.ttest_rel(B, A).pvalue)
    assert table.loc[("entropy", "badge"), "seeds"] == "0,1,2,3" and table.loc[("entropy", "badge"), "n_seeds"] == 4
    winners = table[table["significant"]]
    assert (
        winners["winner"]
        == np.where(winners["mean_diff"] > 0, winners.index.get_level_values(0), winners.index.get_level_values(1))
    ).all()


def test_per_cycle_and_aubc_families_and_significant_wins():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.02, size=6)
    values = {}
    for seed in range(6):
        values[("random", seed)] = [base[seed], base[seed] + 0.05, base[seed] + 0.10]
        values[("entropy", seed)] = [
            base[seed],
            base[seed] + 0.08 + rng.normal(0, 0.002),
            base[seed] + 0.15 + rng.normal(0, 0.002),
        ]
    cycles = cycles_table(values)
    per_cycle = per_cycle_tests(cycles)
    assert per_cycle.groupby("cycle").size().tolist() == [1, 1, 1]
    assert math.isnan(per_cycle.loc[per_cycle["cycle"] == 0, "p_t"].item())  # cycle 0: identical
    assert per_cycle.loc[per_cycle["cycle"] == 2, "winner"].item() == "entropy"
    on_aubc = aubc_tests(aubc_per_run(cycles))
    assert on_aubc["winner"].tolist() == ["entropy"] and on_aubc["n_seeds"].tolist() == [6]
    wins = significant_wins(on_aubc).set_index("sampler")
    assert wins.loc["entropy", "wins"] == 1 and wins.loc["random", "losses"] == 1


# --- penalty matrix --------------------------------------------------------------------------------------
def test_penalty_matrix_counts_significant_wins_per_selection_cycle():
    rows = [  # experiment t1: 2 selection cycles; t2: 1 selection cycle; cycle 0 never counts
        ("t1", 0, "a", "b", 0.05, 0.001, 0.001),
        ("t1", 1, "a", "b", 0.05, 0.01, 0.03),
        ("t1", 1, "a", "c", -0.02, 0.02, 0.2),
        ("t1", 2, "a", "b", 0.04, 0.04, 0.08),
        ("t1", 2, "b", "c", 0.01, 0.5, 1.0),
        ("t2", 1, "a", "b", -0.03, 0.001, 0.003),
    ]
    per_cycle = pd.DataFrame(rows, columns=["task", "cycle", "sampler_a", "sampler_b", "mean_diff", "p_t", "p_t_holm"])
    per_cycle["model"] = "m"
    raw = penalty_matrix(per_cycle, ["a", "b", "c"], "none")
    assert raw.loc["a", "b"] == pytest.approx(0.5 + 0.5)  # t1: cycles 1 and 2, each 1/2
    assert raw.loc["c", "a"] == pytest.approx(0.5)  # t1 cycle 1: a - c < 0, significant
    assert raw.loc["b", "a"] == pytest.approx(1.0)  # t2's one selection cycle
    assert raw.loc["b", "c"] == 0 and raw.loc["a", "a"] == 0
    corrected = penalty_matrix(per_cycle, ["a", "b", "c"], "holm")
    assert corrected.loc["a", "b"] == pytest.approx(0.5) and corrected.loc["c", "a"] == 0
    assert corrected.loc["b", "a"] == pytest.approx(1.0)
    long = penalty_long(raw, "none")
    assert len(long) == 6 and long.set_index(["winner", "loser"]).loc[("a", "b"), "value"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="choose from"):
        penalty_matrix(per_cycle, ["a"], "bonferroni")


# --- label efficiency ------------------------------------------------------------------------------------
def test_labels_to_reach_interpolates_and_says_not_reached():
    curve = pd.DataFrame({"n_labeled": [1000, 1500, 2000], "value": [0.50, 0.56, 0.62]})
    assert labels_to_reach(curve, 0.59) == pytest.approx(1750)  # halfway between 0.56 and 0.62
    assert labels_to_reach(curve, 0.40) == 1000
    assert math.isnan(labels_to_reach(curve, 0.70))


def test_label_efficiency_against_randoms_final_metric():
    cycles = cycles_table(
        {
            ("random", 0): [0.50, 0.55, 0.60],
            ("random", 1): [0.50, 0.55, 0.60],
            ("entropy", 0): [0.50, 0.60, 0.64],
            ("entropy", 1): [0.50, 0.58, 0.66],
            ("coreset", 0): [0.50, 0.52, 0.55],
            ("coreset", 1): [0.50, 0.52, 0.55],
        }
    )
    table = label_efficiency(cycles).set_index("sampler")
    assert table.loc["random", "target"] == pytest.approx(0.60)
    assert table.loc["random", "n_labeled_needed"] == pytest.approx(2000) and table.loc["random", "ratio"] == 1
    # entropy's mean curve: 0.50, 0.59, 0.65 -> 0.60 is 1/6 of the way from 1,500 to 2,000
    assert table.loc["entropy", "n_labeled_needed"] == pytest.approx(1500 + 500 / 6)
    assert table.loc["entropy", "ratio"] == pytest.approx((1500 + 500 / 6) / 2000)
    assert not table.loc["coreset", "reached"] and math.isnan(table.loc["coreset", "ratio"])


# --- query diagnostics -----------------------------------------------------------------------------------
def selected_table(picks: dict) -> pd.DataFrame:
    """{(sampler, seed): {cycle: [(pool_index, classes), ...]}} -> a load_selected-like frame."""
    rows = []
    for (sampler, seed), by_cycle in picks.items():
        for cycle, points in by_cycle.items():
            for index, classes in points:
                rows.append(
                    {
                        "task": "t",
                        "model": "m",
                        "sampler": sampler,
                        "seed": seed,
                        "cycle": cycle,
                        "pool_index": index,
                        "classes": classes,
                    }
                )
    return pd.DataFrame(rows)


def test_class_histograms_and_entropy_of_picks():
    selected = selected_table(
        {
            ("entropy", 0): {1: [(1, ["cat"]), (2, ["cat"]), (3, ["dog"]), (4, ["ship"])]},
            ("random", 0): {
                1: [(5, ["cat"]), (6, ["dog"])],
                2: [(7, ["person", "person", "chair"])],
            },  # detection: one class per object
            ("legacy", 0): {1: [(8, None)]},  # a run from before the classes column: no histogram
        }
    )
    hist = class_histograms(selected).set_index(["sampler", "cycle", "class"])["count"]
    assert hist[("entropy", 1, "cat")] == 2 and hist[("random", 2, "person")] == 2 and "legacy" not in hist.index
    assert entropy_of_counts([2, 1, 1]) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    balance = class_balance(class_histograms(selected)).set_index(["sampler", "cycle"])
    assert balance.loc[("random", 1), "entropy_mean"] == pytest.approx(math.log(2))
    assert balance.loc[("entropy", 1), "n_classes"] == 5  # cat, dog, ship, person, chair seen in the experiment
    assert balance.loc[("random", 1), "normalised_entropy"] == pytest.approx(math.log(2) / math.log(5))


def test_pick_overlap_per_cycle_and_of_the_labeled_sets():
    selected = selected_table(
        {
            ("a", 0): {0: [(1, None), (2, None)], 1: [(3, None), (4, None)], 2: [(5, None), (6, None)]},
            ("b", 0): {0: [(1, None), (2, None)], 1: [(3, None), (7, None)], 2: [(8, None), (9, None)]},
            ("b", 1): {0: [(1, None)], 1: [(2, None)]},  # seed 1 has no sampler to pair with
        }
    )
    overlap = pick_overlap(selected).set_index("cycle")
    assert overlap["seed"].tolist() == [0, 0]
    assert overlap.loc[1, "overlap"] == 0.5 and overlap.loc[1, "labeled_jaccard"] == pytest.approx(3 / 5)
    assert overlap.loc[2, "overlap"] == 0 and overlap.loc[2, "labeled_jaccard"] == pytest.approx(3 / 9)


def test_aubc_over_the_selection_cycles_leaves_cycle_0_out():
    cycles = cycles_table({("random", 0): [0.5, 0.6, 0.7], ("learning_loss", 0): [0.3, 0.6, 0.7]})
    everything = aubc_per_run(cycles).set_index("sampler")["aubc"]
    selection = aubc_per_run(cycles, first_cycle=1).set_index("sampler")
    assert everything["learning_loss"] < everything["random"]  # cycle 0's training cost counts
    assert selection.loc["learning_loss", "aubc"] == pytest.approx(0.65) == selection.loc["random", "aubc"]
    assert (selection["n_first"] == 1500).all()
    assert aubc_per_run(cycles_table({("a", 0): [0.5, 0.6]}), first_cycle=1).empty  # one selection cycle: no area


def test_aubc_summary_gives_the_t_interval_of_the_mean():
    per_run = aubc_per_run(cycles_table({("a", s): [v, v] for s, v in enumerate([0.50, 0.54, 0.58])}))
    row = aubc_summary(per_run).iloc[0]
    half = 4.3027 * 0.04 / 3**0.5  # t(0.975, 2 df) x std / sqrt(n)
    assert row["ci_low"] == pytest.approx(0.54 - half, abs=1e-4) and row["ci_high"] == pytest.approx(
        0.54 + half, abs=1e-4
    )


def test_label_efficiency_bootstrap_interval_over_seeds():
    same = {("random", s): [0.50, 0.55, 0.60] for s in range(4)}
    better = {("entropy", s): [0.50, 0.60, 0.65] for s in range(4)}  # reaches 0.60 at 1,500 on every resample
    table = label_efficiency(cycles_table({**same, **better})).set_index("sampler")
    assert table.loc["entropy", "ci_low"] == table.loc["entropy", "ci_high"] == 1500
    assert table.loc["entropy", "p_reached"] == 1.0
    spread = {("entropy", s): [0.50, v, v + 0.05] for s, v in enumerate([0.52, 0.56, 0.60, 0.64])}
    table = label_efficiency(cycles_table({**same, **spread})).set_index("sampler")
    low, high = table.loc["entropy", ["ci_low", "ci_high"]]
    assert low < table.loc["entropy", "n_labeled_needed"] < high
    assert 0 < table.loc["entropy", "p_reached"] <= 1
    again = label_efficiency(cycles_table({**same, **spread})).set_index("sampler")
    assert again.loc["entropy", "ci_low"] == low  # seeded: the same CSVs, the same interval
    never = {("coreset", s): [0.50, 0.51, 0.52] for s in range(4)}
    row = label_efficiency(cycles_table({**same, **never})).set_index("sampler").loc["coreset"]
    assert row["p_reached"] == 0 and row["ci_high"] == float("inf")
