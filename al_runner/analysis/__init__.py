"""Statistics of active-learning sweeps, without torch: importable where only pandas, numpy, scipy and
statsmodels are installed. `al_runner.figures` draws what these modules compute.

- aubc: area under the budget curve per run, mean ± std per sampler
- paired: paired t-test and Wilcoxon signed-rank for every pair of samplers on the same seeds, Holm-corrected
  within each family, with the effect size, its 95 % interval and the seeds needed for 80 % power
- penalty: the pairwise penalty matrix (how often a row beat a column significantly)
- efficiency: labels each sampler needs to reach the reference sampler's final metric
- queries: class balance of each cycle's picks and the overlap between samplers' picks on one seed
- paper: the numbers the paper reports
- summary: the short text table of a sweep (AUBC, last-cycle metric, significant wins), as al-run prints it

Every function takes the frames `al_runner.figures.loading` builds (one row per run x cycle, or per pick).
"""
