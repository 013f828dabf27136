"""The statistics end to end: real tiny runs -> selected.csv's classes -> al-plot's tables, CSVs and summary."""

import csv
import math

import pandas as pd
import pytest
import torch
from scipy import stats

from al_runner.analysis.aubc import area_under_budget_curve
from al_runner.figures.report import generate_report
from al_runner.runner import run_experiment
from al_runner.schema import CLASSES_SEPARATOR


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """random, entropy and margin x 3 seeds of the smoke schedule (2 cycles)."""
    from tests.conftest import SMOKE, compose_config

    root = tmp_path_factory.mktemp("sweep")
    for sampler in ("random", "entropy", "margin"):
        for seed in range(3):
            run_experiment(
                compose_config(SMOKE + [f"sampler={sampler}", f"seed={seed}"]), root / f"{sampler}-seed{seed}"
            )
    return root


def test_selected_csv_records_the_class_of_every_labeled_pick(sweep, smoke_cfg, tmp_path):
    from al_runner.build import build_task, make_runtime

    task = build_task(smoke_cfg(), make_runtime(smoke_cfg()))
    rows = read_csv(sweep / "margin-seed0" / "selected.csv")
    assert len(rows) == 30 and all(r["classes"] for r in rows)
    indices = torch.tensor([int(r["pool_index"]) for r in rows])
    expected = [task.data.classes[int(label)] for label in task.data.train_labels[indices]]
    assert [r["classes"] for r in rows] == expected


def test_detection_records_one_class_per_object():
    from al_runner.tasks.detection.task import VOCDetectionTask

    class Annotations:  # the two fields labeled_class_names reads
        annotations = [
            type("A", (), {"labels": torch.tensor([2, 2, 1])})(),
            type("A", (), {"labels": torch.tensor([3])})(),
        ]

    task = VOCDetectionTask.__new__(VOCDetectionTask)  # no data on disk needed for the mapping itself
    task.classes, task.pool = ["circle", "square", "triangle"], Annotations()
    assert task.labeled_class_names(torch.tensor([1, 0])) == [["triangle"], ["square", "square", "circle"]]
    assert CLASSES_SEPARATOR.join(task.labeled_class_names([0])[0]) == "square|square|circle"


def test_al_plot_writes_every_statistic_and_they_are_the_analysis_answers(sweep, tmp_path):
    out = tmp_path / "figures"
    report = generate_report([sweep], out)
    cycles = pd.concat([pd.read_csv(p).assign(run=p.parent.name) for p in sweep.rglob("cycles.csv")])

    aubc = pd.read_csv(out / "aubc_per_run.csv").set_index(["sampler", "seed"])
    run = cycles[(cycles["sampler"] == "margin") & (cycles["seed"] == 1)]
    assert aubc.loc[("margin", 1), "aubc"] == pytest.approx(area_under_budget_curve(run["n_labeled"], run["value"]))

    tests = pd.read_csv(out / "paired_tests_aubc.csv").set_index(["sampler_a", "sampler_b"])
    assert len(tests) == 3  # random, entropy, margin: three pairs, one family
    a, b = (aubc.xs(s, level="sampler").sort_index()["aubc"].to_numpy() for s in ("random", "margin"))
    expected = stats.ttest_rel(a, b).pvalue
    got = tests.loc[("random", "margin"), "p_t"]
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)

    per_cycle = pd.read_csv(out / "paired_tests_per_cycle.csv")
    assert sorted(per_cycle["cycle"].unique()) == [0, 1]
    at_zero = per_cycle[per_cycle["cycle"] == 0]
    assert at_zero["p_t"].isna().all()  # cycle 0: three baselines trained alike, identical on every seed

    matrix = pd.read_csv(out / "penalty_matrix.csv", index_col=0)
    assert list(matrix.index) == list(matrix.columns) == ["random", "entropy", "margin"]
    assert ((matrix.to_numpy() >= 0) & (matrix.to_numpy() <= 1)).all()
    assert (out / "penalty_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    balance = pd.read_csv(out / "query_class_balance.csv")
    assert set(balance["cycle"]) == {0, 1} and (balance["n_classes"] == 4).all()
    assert ((balance["normalised_entropy"] > 0) & (balance["normalised_entropy"] <= 1 + 1e-9)).all()
    histograms = pd.read_csv(out / "query_class_histograms.csv")
    per_run_cycle = histograms.groupby(["sampler", "seed", "cycle"])["count"].sum()
    assert set(per_run_cycle[per_run_cycle.index.get_level_values("cycle") == 1]) == {10}  # K = 10 picks

    overlap = pd.read_csv(out / "query_overlap.csv")
    assert set(zip(overlap["sampler_a"], overlap["sampler_b"])) == {
        ("random", "entropy"),
        ("random", "margin"),
        ("entropy", "margin"),
    }
    efficiency = pd.read_csv(out / "label_efficiency.csv").set_index("sampler")
    assert efficiency.loc["random", "ratio"] == pytest.approx(1.0)

    markdown = (out / "results.md").read_text()
    for heading in (
        "### Area under the budget curve (AUBC)",
        "### Paired tests on AUBC",
        "### Paired tests per cycle",
        "### Penalty matrix",
        "### Label efficiency",
        "### Query class balance",
        "### Overlap of the samplers' picks on the same seed",
    ):
        assert heading in markdown
    assert "no class of any pick is recorded" not in markdown

    summary = "\n".join(report.summary)
    assert "AUBC" in summary and "wins/losses" in summary
    for sampler in ("random", "entropy", "margin"):
        assert sampler in summary


@pytest.mark.slow  # a real al-run -m in a subprocess (~20 s on 2 busy cores)
def test_a_multirun_ends_with_the_statistics_summary_and_the_path_of_results_md(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    args = [
        "-m",
        "task=synthetic",
        "model=small_cnn",
        "schedule=smoke",
        "model.net.width=8",
        "progress=false",
        "sampler=random,entropy",
        "seed=0,1",
        "name=stats",
        f"paths.output={tmp_path}",
        "runtime.threads=1",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=repo, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results_md = tmp_path / "stats" / "figures" / "results.md"
    assert results_md.is_file() and "### Paired tests on AUBC" in results_md.read_text()
    out = result.stdout
    assert (
        "statistics of this sweep" in out
        and f"full report (AUBC, paired tests with Holm, penalty matrix, ...): {results_md}" in out
    )
    table = out[out.index("statistics of this sweep") :]
    assert "AUBC" in table and "wins/losses" in table and "random" in table and "entropy" in table


def test_classes_of_older_runs_can_be_backfilled_beside_selected_csv(sweep, tmp_path):
    import shutil
    import sys
    from pathlib import Path

    from al_runner.analysis.queries import read_selected

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import backfill_classes

    old = tmp_path / "old-run"
    shutil.copytree(sweep / "entropy-seed1", old)
    recorded = read_selected(old)
    table = pd.read_csv(old / "selected.csv", dtype=str, keep_default_na=False).drop(columns=["classes"])
    table.to_csv(old / "selected.csv", index=False)  # as a run from before the column
    assert read_selected(old)["classes"].isna().all()
    assert backfill_classes.main([str(tmp_path)]) == 0
    assert read_selected(old)["classes"].tolist() == recorded["classes"].tolist()
    assert backfill_classes.runs_without_classes([tmp_path]) == [old]  # selected.csv itself is left as it was


def test_backfill_checks_the_data_against_a_checkpoint_once_per_task(sweep, tmp_path, monkeypatch):
    import shutil
    import sys
    from pathlib import Path

    from al_runner.analysis.queries import read_selected
    from al_runner.tasks.classification.task import ClassificationTask

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import backfill_classes

    for name in ("entropy-seed1", "margin-seed2"):  # two runs of one task, from before the classes column
        shutil.copytree(sweep / name, tmp_path / "runs" / name)
        table = pd.read_csv(tmp_path / "runs" / name / "selected.csv", dtype=str, keep_default_na=False)
        table.drop(columns=["classes"]).to_csv(tmp_path / "runs" / name / "selected.csv", index=False)
    checkpoint = sweep / "random-seed0" / "checkpoint.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["data"]["pool"] = "changed"
    torch.save(state, tmp_path / "other.pt")
    assert backfill_classes.main([str(tmp_path / "runs"), "--check-checkpoint", str(tmp_path / "other.pt")]) == 2
    assert backfill_classes.runs_without_classes([tmp_path / "runs"]) == sorted((tmp_path / "runs").iterdir())

    loads, fingerprints = [], []
    load, fingerprint = torch.load, ClassificationTask.fingerprint
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    monkeypatch.setattr(ClassificationTask, "fingerprint", lambda self: fingerprints.append(1) or fingerprint(self))
    assert backfill_classes.main([str(tmp_path / "runs"), "--check-checkpoint", str(checkpoint)]) == 0
    assert loads == [checkpoint] and len(fingerprints) == 1
    for name in ("entropy-seed1", "margin-seed2"):
        backfilled = read_selected(tmp_path / "runs" / name)["classes"]
        assert backfilled.tolist() == read_selected(sweep / name)["classes"].tolist()


def test_controls_and_oracles_never_lead_the_per_cycle_table():
    from al_runner.figures.aggregate import cycle_leaders

    rows = [
        {"task": "t", "model": "m", "sampler": s, "seed": seed, "cycle": 1, "n_labeled": 20, "value": v + seed * 0.01}
        for s, v in [
            ("random", 0.5),
            ("entropy", 0.6),
            ("oracle_true_loss", 0.9),
            ("entropy_with_module", 0.8),
            ("random_with_module", 0.7),
        ]
        for seed in (0, 1)
    ]
    leaders = cycle_leaders(pd.DataFrame(rows))
    assert leaders["leader"].tolist() == ["entropy"] and leaders["runner_up"].tolist() == ["random"]


def test_runs_from_before_the_independent_seeds_are_not_a_separate_arm(sweep, tmp_path):
    import shutil

    from al_runner.figures.loading import load_cycles

    for seed in range(3):
        shutil.copytree(sweep / f"random-seed{seed}", tmp_path / f"random-seed{seed}")
    old = tmp_path / "random-seed0" / "config.yaml"
    text = old.read_text()
    assert "seed_data: null" in text and "seed_model: null" in text
    old.write_text(
        text.replace("seed_data: null\n", "").replace("seed_model: null\n", "")
    )  # as written before the keys
    loaded = load_cycles([tmp_path])
    assert set(loaded.cycles["sampler"]) == {"random"} and loaded.cycles["seed"].nunique() == 3
    pinned = tmp_path / "random-seed1" / "config.yaml"
    pinned.write_text(pinned.read_text().replace("seed_data: null", "seed_data: 0"))
    assert set(load_cycles([tmp_path]).cycles["sampler"]) == {"random [seed_data=None]", "random [seed_data=0]"}


def test_report_sentences_on_ranking_change_family_size_and_chance():
    from al_runner.figures.statistics_report import chance_sentence, family_size_sentence, ranking_change_sentence

    def summary(means):
        return pd.DataFrame([{"task": "t", "model": "m", "sampler": s, "mean": v} for s, v in means.items()])

    moved = ranking_change_sentence(
        summary({"random": 0.60, "learning_loss": 0.55}), summary({"random": 0.62, "learning_loss": 0.64})
    )
    assert "learn loss 2 → 1" in moved and "random 1 → 2" in moved
    assert "changes no sampler's rank" in ranking_change_sentence(summary({"a": 2, "b": 1}), summary({"a": 2, "b": 1}))
    per_cycle = pd.DataFrame(
        {"cycle": [0, 0, 1, 1, 1, 2, 2, 2], "p_t": [float("nan"), 0.2, 0.01, 0.3, 0.5, 0.04, 0.6, 0.7]}
    )
    assert family_size_sentence(per_cycle).endswith("cycle 0: 1, cycle 1: 3, cycle 2: 3.")
    chance = chance_sentence(per_cycle, 0.05)
    assert "2 of the 6 paired comparisons" in chance and "about 0.3 would by chance" in chance


def test_al_plot_samplers_keeps_only_the_named_samplers_in_every_table_and_family(sweep, tmp_path, capsys):
    from al_runner.figures.cli import main

    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      sampler: random,entropy,margin\n      seed: 0,1,2\n"
    )
    try:
        out = tmp_path / "two"
        assert main(["--runs", str(sweep), "--out", str(out), "--samplers", "random,margin"]) == 0
        tests = pd.read_csv(out / "paired_tests_aubc.csv")
        assert list(zip(tests["sampler_a"], tests["sampler_b"])) == [("random", "margin")]  # a family of one pair
        assert set(pd.read_csv(out / "aubc_per_run.csv")["sampler"]) == {"random", "margin"}
        markdown = (out / "results.md").read_text()
        assert "Only these samplers' runs (--samplers): random, margin" in markdown
        assert "partial sweep:" not in markdown  # entropy was asked for by the plan but left out on purpose
        everything = generate_report([sweep], tmp_path / "all")
        assert not any("partial sweep" in note for note in everything.notes)

        assert main(["--runs", str(sweep), "--out", str(tmp_path / "bad"), "--samplers", "random,badge"]) == 2
        error = capsys.readouterr().err
        assert "no runs of badge" in error and "choose from entropy, margin, random" in error
    finally:
        (sweep / "multirun.yaml").unlink()
