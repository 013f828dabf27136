"""One call that turns the CSVs of one or more sweeps into every figure and table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from al_runner.analysis.paper import PAPER_FIG8_CORRELATION
from al_runner.analysis.summary import summary_lines
from al_runner.figures.aggregate import (
    coverage_notes,
    cycle_leaders,
    last_cycle_summary,
    metric_series,
    paired_differences,
    ranking_series,
    selection_gain_over_control,
    timing_summary,
)
from al_runner.figures.errors import FigureDataError
from al_runner.figures.labels import CONTROL_SAMPLER, dataset_label, figure_number
from al_runner.figures.loading import NOT_A_PAPER_TASK, data_folder_name, load_cycles, without_generated_data
from al_runner.figures.loss_scatter import Fig8Data, choose_fig8_runs, load_fig8_data
from al_runner.figures.plots import (
    experiment_title,
    plot_loss_scatter,
    plot_metric_curves,
    plot_ranking_accuracy,
    save_figure,
)
from al_runner.figures.statistics_report import (
    StatisticsTables,
    compute_statistics,
    statistics_sections,
    write_statistics,
)
from al_runner.figures.sweep_plan import planned_experiments, planned_run_notes, unfinished_run_notes
from al_runner.figures.tables import (
    LEADERS_MD_HEADERS,
    PAIRED_MD_HEADERS,
    RANKING_MD_HEADERS,
    RESULTS_MD_HEADERS,
    TIMING_MD_HEADERS,
    leaders_markdown_rows,
    markdown_table,
    paired_markdown_rows,
    paper_task_for,
    ranking_markdown_rows,
    results_footnotes,
    results_markdown_rows,
    results_table,
    timing_markdown_rows,
    timing_table,
)
from al_runner.schema import TEST_SCORES_CSV as TEST_SCORES_FILE


@dataclass
class Report:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # missing samplers, short runs, skipped files, ...
    fig8_sources: list[str] = field(default_factory=list)  # which run each Fig. 8 used
    summary: list[str] = field(default_factory=list)  # the short terminal table (AUBC, last cycle, significant wins)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _experiment_stem(prefix: str, task: str, model: str, show_model: bool) -> str:
    return f"{prefix}_{_file_safe(task)}" + (f"_{_file_safe(model)}" if show_model else "")


def _tasks_with_several_models(cycles: pd.DataFrame) -> set[str]:
    models = cycles.groupby("task")["model"].nunique()
    return set(models[models > 1].index)


def _resolved_root(text: str) -> str | None:
    """A config's `task.root` as a path: interpolations such as `${oc.env:VAR,default}` resolved where they can
    be on their own, None where they cannot (e.g. `${paths.data}/x` outside its config)."""
    if "${" not in text:
        return text
    from omegaconf import OmegaConf

    try:
        return str(OmegaConf.create({"root": text}).root)
    except Exception:  # noqa: BLE001 - an unresolvable root only costs the title its folder name
        return None


def dataset_names(
    cycles: pd.DataFrame, configs: dict[str, dict[str, str] | None], paper_task_map: dict[str, str]
) -> dict[str, str]:
    """task -> what the figures call its data: "CIFAR-10" for runs on (or mapped to) the paper's CIFAR-10, an
    ImageFolder root's folder name, else the task's name (`labels.dataset_label`)."""
    names = {}
    for task, run_dirs in cycles.groupby("task")["run_dir"]:
        roots = {
            _resolved_root(root) or data_folder_name(root)
            for d in run_dirs.unique()
            if (root := (configs.get(d) or {}).get("task.root"))
        }
        names[task] = dataset_label(task, paper_task_for(task, paper_task_map), [r for r in roots if r])
    return names


def write_metric_figures(
    cycles: pd.DataFrame,
    out_dir: Path,
    paper_task_map: dict[str, str],
    names: dict[str, str] | None = None,
    planned: set[tuple[str, str]] = frozenset(),
) -> list[Path]:
    """Fig. 4 / 6 / 7: one learning-curve figure per task (× model). `names`: `dataset_names`; `planned`:
    experiments whose sweep plan says which samplers were asked for (`sweep_plan.planned_experiments`)."""
    names = names or {}
    series = metric_series(cycles)
    several_models = _tasks_with_several_models(cycles)
    written = []
    for (task, model), rows in series.groupby(["task", "model"]):
        paper_task = paper_task_for(task, paper_task_map)
        show_model = task in several_models
        metric = " / ".join(
            sorted(cycles.loc[(cycles["task"] == task) & (cycles["model"] == model), "metric"].unique())
        )
        number = figure_number(paper_task, metric)  # the file name; the title claims a paper figure only on its data
        title = experiment_title(
            task, model, show_model=show_model, figure_number=number if paper_task else None, dataset=names.get(task)
        )
        figure = plot_metric_curves(
            rows, title=title, metric=metric, report_missing_paper_samplers=(task, model) not in planned
        )
        written += save_figure(figure, out_dir, _experiment_stem(f"fig{number}", task, model, show_model))
    return written


def write_ranking_figure(
    cycles: pd.DataFrame, out_dir: Path, notes: list[str], names: dict[str, str] | None = None
) -> list[Path]:
    """Fig. 5, if any run has a loss-prediction module."""
    series = ranking_series(cycles)
    if series.empty:
        notes.append("no run has a ranking accuracy (no learn-loss runs); no Fig. 5")
        return []
    show_model = bool(_tasks_with_several_models(series))
    return save_figure(
        plot_ranking_accuracy(series, show_model=show_model, dataset_names=names), out_dir, "fig5_ranking_accuracy"
    )


def _fig8_title(data: Fig8Data, generated: bool, dataset: str | None = None) -> str:
    run = data.run
    seeds = f"seed {run.seed}"
    if len(run.seeds_available) > 1:
        seeds += f" (lowest of seeds {', '.join(map(str, run.seeds_available))})"
    task = (dataset or dataset_label(run.task)) + (
        " (generated data)" if generated else ""
    )  # e.g. mpii_cpu's stick figures
    return (
        f"Fig. 8: {task} ({run.model}), learn loss, {seeds}, cycle {data.cycle}: "
        f"{len(data.points):,} of {data.n_test_points:,} test points"
    )


def _fig8_source(data: Fig8Data) -> str:
    run = data.run
    return (
        f"Fig. 8 {run.task} ({run.model}): {run.run_dir / TEST_SCORES_FILE} (seed {run.seed}, cycle {data.cycle}, "
        f"{len(data.points):,} of {data.n_test_points:,} points; Pearson r: predicted loss "
        f"{data.predicted_loss_correlation:.3f}, {data.run.uncertainty_name} {data.uncertainty_correlation:.3f}; "
        f"ranking accuracy over all {data.n_test_points:,} points: predicted loss "
        f"{data.predicted_loss_ranking_accuracy:.3f}, "
        f"{data.run.uncertainty_name} {data.uncertainty_ranking_accuracy:.3f})"
    )


def write_loss_scatter_figures(
    cycles: pd.DataFrame,
    out_dir: Path,
    paper_task_map: dict[str, str],
    report: Report,
    names: dict[str, str] | None = None,
) -> None:
    """Fig. 8 per task (× model) that has a learn-loss run with test scores."""
    runs, notes = choose_fig8_runs(cycles)
    report.notes += notes
    several_models = _tasks_with_several_models(cycles)
    for run in runs:
        data = load_fig8_data(run)
        paper_task = paper_task_for(run.task, paper_task_map)
        paper = PAPER_FIG8_CORRELATION.get(paper_task or "")
        figure = plot_loss_scatter(
            data, title=_fig8_title(data, paper_task == NOT_A_PAPER_TASK, (names or {}).get(run.task)), paper=paper
        )
        stem = _experiment_stem("fig8", run.task, run.model, run.task in several_models)
        report.written += save_figure(figure, out_dir, stem)
        report.fig8_sources.append(_fig8_source(data))


def _bullets(lines: list[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else f"- {empty}"


@dataclass
class PerCycleTables:
    leaders: pd.DataFrame  # aggregate.cycle_leaders
    paired: pd.DataFrame  # aggregate.paired_differences (vs random)
    ranking: pd.DataFrame  # aggregate.ranking_series
    vs_control: pd.DataFrame  # aggregate.selection_gain_over_control (empty without the control)


def per_cycle_sections(tables: PerCycleTables) -> list[str]:
    return [
        "## Per cycle: which sampler led",
        "Mean over the seeds that every sampler reached at that cycle (a partial sweep's extra seeds are left "
        "out here); lead = leader − runner-up; largest seed std = the largest "
        "sample std over seeds among the samplers at that cycle. A lead within one std could be reordered by "
        "another seed. Cycle 0 has had no selection yet (the same random initial set for every sampler): a "
        "difference there comes only from training with or without the loss-prediction module. Controls "
        "(random_with_module, entropy_with_module) and oracles (oracle_*) are not contenders and are left out here.",
        markdown_table(LEADERS_MD_HEADERS, leaders_markdown_rows(tables.leaders)),
        "## Per cycle: each sampler against random on the same seed",
        "Same seed = same initial labeled set and initial weights, so the paired difference removes their "
        "shared variation; mean ± sample std over the seeds both reached.",
        markdown_table(PAIRED_MD_HEADERS, paired_markdown_rows(tables.paired)),
        "## Per cycle: loss-prediction module ranking accuracy (Fig. 5)",
        markdown_table(RANKING_MD_HEADERS, ranking_markdown_rows(tables.ranking)),
        *(control_section(tables.vs_control) if len(tables.vs_control) else []),
    ]


def control_section(vs_control: pd.DataFrame) -> list[str]:
    return [
        f"## Per cycle: learn loss against the control `{CONTROL_SAMPLER}` on the same seed",
        "The control trains the loss-prediction module exactly as learn loss does but selects at random (the "
        "points random selects), so learn loss − control is what the module's selections add with the same "
        "training, and control − random (in the table against random) is what training with the module costs "
        "or gives on the same data. Mean ± sample std over the seeds both reached.",
        markdown_table(
            [*PAIRED_MD_HEADERS[:-1], "learn loss − control, same seed (mean ± std)"], paired_markdown_rows(vs_control)
        ),
    ]


def results_markdown(
    results: pd.DataFrame,
    timing: pd.DataFrame,
    report: Report,
    run_roots: list[Path],
    out_dir: Path,
    per_cycle: PerCycleTables | None = None,
    statistics: StatisticsTables | None = None,
    samplers: list[str] | None = None,
) -> str:
    figures = [path.relative_to(out_dir).as_posix() for path in report.written if path.suffix == ".png"]
    sections = [
        "# Results: learning loss for active learning",
        "Generated by `al-plot` from the cycles.csv files under: " + ", ".join(f"`{root}`" for root in run_roots),
        *([SAMPLERS_LINE + ", ".join(samplers)] if samplers else []),
        "## Last cycle, ours beside the paper (Fig. 4 / 5 / 6 / 7)",
        markdown_table(RESULTS_MD_HEADERS, results_markdown_rows(results)),
        "\n".join(f"{note}  " for note in results_footnotes(results)),
        "## Wall time",
        "Mean seconds per cycle in each phase over all cycles of all seeds (select excludes the 0 a run's "
        "final cycle records); total = mean over seeds of one run's summed time.",
        markdown_table(TIMING_MD_HEADERS, timing_markdown_rows(timing)),
        *(per_cycle_sections(per_cycle) if per_cycle is not None else []),
        *(statistics_sections(statistics) if statistics is not None else []),
        "## Missing or partial data",
        _bullets(report.notes, "none: nothing planned is missing and all runs reached the same cycle"),
        "## Fig. 8 sources",
        _bullets(report.fig8_sources, "none"),
        "## Figures",
        _bullets([f"[{name}]({name})" for name in figures], "none"),
    ]
    return "\n\n".join(sections) + "\n"


SAMPLERS_LINE = "Only these samplers' runs (--samplers): "


def only_samplers(cycles: pd.DataFrame, samplers: list[str], run_roots: list[Path]) -> pd.DataFrame:
    """The rows of the named samplers (an arm such as `learning_loss [schedule.x=1]` counts as its sampler);
    a name with no runs is an error that lists the samplers there are."""
    base = cycles["sampler"].str.split(" [", n=1, regex=False).str[0]
    unknown = [name for name in samplers if name not in set(base)]
    if unknown:
        roots = ", ".join(str(root) for root in run_roots)
        raise FigureDataError(
            f"--samplers: no runs of {', '.join(unknown)} under {roots}; choose from {', '.join(sorted(set(base)))}"
        )
    return cycles[base.isin(samplers)].reset_index(drop=True)


def generate_report(
    run_roots: list[Path],
    out_dir: Path,
    paper_task_map: dict[str, str] | None = None,
    samplers: list[str] | None = None,
) -> Report:
    """Read every cycles.csv below `run_roots`; write all figures (PNG + PDF), results.{csv,md} and timing.csv.
    `samplers`: only these samplers' runs enter the figures and the statistics (and the families Holm corrects)."""
    paper_task_map = paper_task_map or {}
    run_roots, out_dir = [Path(root) for root in run_roots], Path(out_dir)
    loaded = load_cycles(run_roots)
    cycles = only_samplers(loaded.cycles, samplers, run_roots) if samplers else loaded.cycles
    paper_task_map, generated_notes = without_generated_data(cycles, paper_task_map, loaded.configs)
    planned = planned_experiments(cycles, run_roots)
    report = Report(
        notes=loaded.notes
        + generated_notes
        + planned_run_notes(cycles, run_roots, samplers)
        + unfinished_run_notes(cycles)
        + coverage_notes(cycles, planned)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    names = dataset_names(cycles, loaded.configs, paper_task_map)

    report.written += write_metric_figures(cycles, out_dir, paper_task_map, names, planned)
    report.written += write_ranking_figure(cycles, out_dir, report.notes, names)
    write_loss_scatter_figures(cycles, out_dir, paper_task_map, report, names)

    last_cycle = last_cycle_summary(cycles)
    results = results_table(last_cycle, paper_task_map)
    timing = timing_table(timing_summary(cycles))
    per_cycle = PerCycleTables(
        cycle_leaders(cycles), paired_differences(cycles), ranking_series(cycles), selection_gain_over_control(cycles)
    )
    tables = {
        "results.csv": results,
        "timing.csv": timing,
        "per_cycle_leaders.csv": per_cycle.leaders,
        "per_cycle_vs_random.csv": per_cycle.paired,
        "per_cycle_ranking_accuracy.csv": per_cycle.ranking,
    }
    if len(per_cycle.vs_control):
        tables["per_cycle_vs_control.csv"] = per_cycle.vs_control
    for name, table in tables.items():
        table.to_csv(out_dir / name, index=False)
    statistics = compute_statistics(cycles)
    report.written += write_statistics(statistics, out_dir)
    markdown = results_markdown(results, timing, report, run_roots, out_dir, per_cycle, statistics, samplers)
    (out_dir / "results.md").write_text(markdown, encoding="utf-8")
    report.written += [out_dir / name for name in (*tables, "results.md")]
    report.summary = summary_lines(results, statistics.aubc_with_wins())
    return report
