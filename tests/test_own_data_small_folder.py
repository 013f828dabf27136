"""The README's "Your own data" command runs as written on a small ImageFolder (its schedule sizes itself from the
pool); a schedule too big for the pool names an override that fits; a refused run leaves nothing behind."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from al_runner.build import schedule_sizes, validate_schedule
from al_runner.errors import ConfigError
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parent.parent
POOL, TEST, CLASSES = 1500, 150, ("circle", "square", "stripe")


def make_imagefolder(root: Path, pool: int = POOL, test: int = TEST, size: int = 8) -> Path:
    """`root/train/<class>/*.png` and `root/test/<class>/*.png`: tiny images, one colour channel per class."""
    for split, count in (("train", pool), ("test", test)):
        for i in range(count):
            label = i % len(CLASSES)
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            pixel = [(37 * i) % 96] * 3
            pixel[label] = 160 + (i % 96)
            Image.new("RGB", (size, size), tuple(pixel)).save(folder / f"{i:05d}.png")
    return root


def al_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def readme_own_data_command() -> list[str]:
    """The `al-run` command of the README's "Your own data" section, as its words."""
    section = (REPO / "README.md").read_text().split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    command = next(c for c in block.replace("\\\n", " ").splitlines() if c.startswith("al-run"))
    return shlex.split(command)[1:]


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("own") / "my_images")


def test_the_readmes_own_data_command_runs_as_written_on_1500_images(small_folder, tmp_path):
    words = readme_own_data_command()
    assert "-m" in words and "task=imagefolder" in words and any(w.startswith("schedule=") for w in words)
    # the README's command, with the root pointing at the generated folder and made quick (1 epoch, 2 samplers,
    # 1 seed, tiny width): its schedule and structure are the README's
    quick = {"task.root": str(small_folder), "seed": "0", "sampler": "random,learning_loss"}
    args = [f"{w.split('=', 1)[0]}={quick[w.split('=', 1)[0]]}" if w.split("=", 1)[0] in quick else w for w in words]
    args += [
        "schedule.epochs=1",
        "model.net.width=8",
        "runtime.threads=1",
        f"paths.output={tmp_path}",
        f"paths.cache={tmp_path / 'cache'}",
        "hydra.callbacks.sweep_summary.statistics=false",
    ]
    result = al_run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    name = next(w.split("=", 1)[1] for w in words if w.startswith("name="))
    cycles = sorted((tmp_path / name).glob("*/cycles.csv"))
    assert len(cycles) == 2
    for path in cycles:
        labeled = [int(line.split(",")[5]) for line in path.read_text().splitlines()[1:]]
        assert labeled == [150, 300, 450, 600, 750]  # 10 % of 1,500 at random, then 10 % per selection


def test_a_count_schedule_too_big_for_the_pool_names_an_override_that_fits():
    cfg = compose_config(["task=imagefolder", "task.root=/any", "schedule=reduced_cifar10"])  # 500 + 4 x 500 points
    with pytest.raises(ConfigError, match=r"has only 1437: add schedule\.query_size=234, or use schedule=own_data"):
        validate_schedule(cfg, pool_size=1437)
    validate_schedule(
        compose_config(["task=imagefolder", "task.root=/any", "schedule=reduced_cifar10", "schedule.query_size=234"]),
        pool_size=1437,
    )
    own = compose_config(["task=imagefolder", "task.root=/any", "schedule=own_data"])
    validate_schedule(own, pool_size=1437)
    assert schedule_sizes(own, 1437) == (143, 143) and schedule_sizes(own, 50000) == (5000, 5000)


@pytest.mark.parametrize("case", ["corrupt image", "mixed image sizes"])
def test_a_run_refused_for_its_data_leaves_no_log_and_no_empty_output_folder(tmp_path, case):
    root = make_imagefolder(tmp_path / "data", pool=12, test=6)
    bad = root / "train" / CLASSES[0] / "00000.png"
    if case == "corrupt image":
        bad.write_bytes(b"not a png")
    else:
        Image.new("RGB", (9, 9)).save(bad)
    out = tmp_path / "outputs"
    result = al_run(
        "task=imagefolder",
        f"task.root={root}",
        "schedule=smoke",
        "model.net.width=4",
        "name=mine",
        f"paths.output={out}",
        f"paths.cache={tmp_path / 'cache'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "00000.png" in result.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))  # no al-run.log, no outputs/mine/


def test_a_refused_sweep_says_what_to_do_and_a_bad_size_creates_nothing(tmp_path):
    out = tmp_path / "outputs"
    refused = al_run(
        "-m", "task=synthetic", "schedule=smoke", "schedule.query_size=-5", f"paths.output={out}", cwd=tmp_path
    )
    assert refused.returncode == 1 and "schedule.query_size must be an integer >= 0" in refused.stderr
    assert not out.exists()
    too_big = al_run(
        "-m",
        "task=synthetic",
        "schedule=smoke",
        "model.net.width=4",
        "schedule.initial_size=100000",
        "hydra.callbacks.sweep_summary.statistics=false",
        f"paths.output={out}",
        cwd=tmp_path,
    )
    assert too_big.returncode == 1 and "has only" in too_big.stderr and "add schedule." in too_big.stderr
    assert "rerun the same command to resume" not in too_big.stderr  # a config error is fixed, not resumed
    assert "fix what each error names" in too_big.stderr


def test_the_readme_says_how_to_reach_the_commands_and_that_imagefolder_flips_images():
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "source .venv/bin/activate" in quick_start and ".venv/bin/al-run" in quick_start
    own_data = readme.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    assert "task.build.augmentation.hflip=false" in own_data
