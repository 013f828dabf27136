"""The run directory's CSV files: names and columns, defined once (imported by the runner and the
figure scripts; no torch import, so plotting needs only pandas and matplotlib)."""

CYCLES_CSV = "cycles.csv"
SELECTED_CSV = "selected.csv"
TEST_SCORES_CSV = "test_scores.csv"
METRIC_DETAILS_CSV = "metric_details.csv"
CHECKPOINT = "checkpoint.pt"
IN_CYCLE_CHECKPOINT = "checkpoint_in_cycle.pt"  # training progress within a cycle (`checkpoint_minutes`)
JOB_LOG = "al-run.log"  # the run's log (conf/config.yaml: hydra.job.name)

# One row per cycle. `metric` names the task's metric (accuracy, mAP@0.5, PCKh@0.5) and `value` holds it;
# `uncertainty` names what the task's uncertainty measures (softmax_entropy, ...), the right panel of Fig. 8.
CYCLE_COLUMNS = (
    "task",
    "model",
    "sampler",
    "seed",
    "cycle",
    "n_labeled",
    "metric",
    "value",
    "uncertainty",
    "ranking_accuracy",
    "train_s",
    "eval_s",
    "select_s",
)
TIMING_COLUMNS = ("train_s", "eval_s", "select_s")  # wall-clock: the only columns that differ between reruns
# Pool indices labeled in each cycle (cycle 0: the random initial set, no score) with their sampler scores, and
# what each point is in the task's data (`item`: "train/cat/0001.jpg", "VOC2007/000005", "015601864.jpg#0").
# `classes`: the class names of each pick, read once it is labeled (one per image; one per object for detection;
# CLASSES_SEPARATOR-joined; empty where the task has no classes): query diagnostics only, never shown to a sampler.
SELECTED_COLUMNS = ("cycle", "pool_index", "item", "score", "classes")
CLASSES_SEPARATOR = "|"
# Per test point of the last finished cycle (Fig. 8): real loss, predicted loss (learning-loss samplers only)
# and the task's uncertainty.
TEST_SCORE_COLUMNS = ("cycle", "test_index", "real_loss", "predicted_loss", "uncertainty")
# Named sub-results of the metric per cycle (per-class AP, per-joint PCKh); absent when the task has none.
METRIC_DETAIL_COLUMNS = ("cycle", "name", "value")

# What decides a run's floating-point path (`al_runner.platform`), written beside config.yaml.
PLATFORM_FILE = "platform.json"
# The keys a resume compares, by device type; a key absent from an older record is not compared.
# `precision` is the resolved autocast precision ("fp32" / "bf16"), once runs record it.
PLATFORM_KEYS = {
    "cpu": (
        "device",
        "precision",
        "torch",
        "cpu_model",
        "cpu_capability",
        "onednn_isa",
        "onednn",
        "mkl",
        "threads",
        "isa_environment",
    ),
    "cuda": ("device", "precision", "torch", "gpu", "cuda", "cudnn"),
}
