"""The README and docs/ refer only to what the repository contains, and their commands work.

- every relative link (and its #anchor) in README.md and docs/*.md resolves;
- every `path/to/file` pointer in backticks that looks like a repository path exists, and every
  `al_runner.x.y` pointer names a module (and, if given, something defined in it);
- every `README "Section"` / `docs/page.md "Section"` reference anywhere in the repository names a real heading;
- nothing cites a design document the repository does not contain;
- every command in their bash code blocks without a <placeholder> at least composes its config (al-run: Hydra's
  compose API and the same override checks as `al-run`; al-plot: its argument parser; scripts, modules and make
  targets: they exist).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from al_runner.config_schema import check_overrides
from al_runner.figures.cli import build_parser
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REPO_PREFIXES = (
    "al_runner/",
    "conf/",
    "scripts/",
    "docs/",
    "tests/",
    "benchmarks/",
    "outputs/reference/",
    "hydra_plugins/",
    ".ci/",
)
REPO_FILES = ("Makefile", "pyproject.toml", "setup.py", "README.md")


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------- links, anchors, pointers


def heading_slugs(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation other than - and _ dropped, spaces to hyphens."""
    slugs = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", without_code_blocks(markdown), flags=re.M):
        slugs.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return slugs


def headings(markdown: str) -> set[str]:
    return {
        h.replace("`", "").strip().lower()
        for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", without_code_blocks(markdown), re.M)
    }


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def expand_braces(text: str) -> list[str]:
    """`paper_{cifar10,voc}.yaml` -> both names (one level, as the docs write them)."""
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    return [
        expanded
        for option in match.group(1).split(",")
        for expanded in expand_braces(text[: match.start()] + option + text[match.end() :])
    ]


def module_pointer_problem(pointer: str) -> str | None:
    """`al_runner.a.b` must be a module; `al_runner.a.b.name` a module that defines `name`."""
    parts = pointer.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            if not rest:
                return None
            if len(rest) == 1 and re.search(
                rf"^\s*(def|class)\s+{rest[0]}\b|^{rest[0]}\s*[:=]|\b{rest[0]}\b", source.read_text(), re.M
            ):
                return None
            return f"{pointer}: {'.'.join(rest)} is not defined in {source.relative_to(REPO)}"
    return f"{pointer}: no such module"


def pointer_problems(markdown_file: Path) -> list[str]:
    text = markdown_file.read_text()
    problems = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code_blocks(text)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path_part, _, anchor = target.partition("#")
        resolved = (markdown_file.parent / path_part).resolve() if path_part else markdown_file
        if not resolved.exists():
            problems.append(f"link {target}: {resolved} does not exist")
        elif anchor and anchor not in heading_slugs(resolved.read_text()):
            problems.append(f"link {target}: no heading with anchor #{anchor} in {resolved}")
    for pointer in re.findall(r"`([^`\s]+)`", text):
        pointer = pointer.rstrip(".,;:")
        if re.search(r"[<>*$…\[]", pointer):
            continue  # a placeholder or a pattern, not a file
        if pointer.startswith(REPO_PREFIXES) or pointer in REPO_FILES:
            for path in expand_braces(pointer):
                if not (REPO / path).exists():
                    problems.append(f"pointer `{pointer}`: {path} does not exist")
        elif re.fullmatch(r"al_runner(\.\w+)+", pointer):
            problem = module_pointer_problem(pointer)
            if problem:
                problems.append(f"pointer `{problem}`")
    return problems


@pytest.mark.parametrize("markdown_file", DOCS, ids=doc_id)
def test_every_link_anchor_and_file_pointer_resolves(markdown_file):
    assert pointer_problems(markdown_file) == []


def test_the_checker_catches_broken_links_anchors_and_pointers(tmp_path):
    (tmp_path / "configuration.md").write_text((REPO / "docs" / "configuration.md").read_text())
    page = tmp_path / "probe.md"
    page.write_text(
        "[a](missing.md) [b](configuration.md#no-such-section) [c](configuration.md#reduced-presets)\n"
        "`al_runner/nope.py` `al_runner/cli.py` `conf/schedule/paper_{cifar10,nope}.yaml` "
        "`al_runner.build.no_such_function` `al_runner.build.resolve_threads` `outputs/<name>/x`\n"
    )
    problems = pointer_problems(page)
    assert len(problems) == 5, problems
    assert {p.split(":")[0] for p in problems} >= {"link missing.md", "link configuration.md#no-such-section"}


def repository_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    paths = {REPO / name for name in listed} | set(DOCS)
    keep = (".py", ".yaml", ".md", ".sh", ".toml", ".cfg", ".txt")
    return sorted(
        p
        for p in paths
        if p.is_file()
        and (p.suffix in keep or p.name in ("Makefile", "run"))
        and not (p.is_relative_to(REPO / "outputs") and p.suffix != ".md")
    )


def test_section_references_anywhere_in_the_repository_name_real_headings():
    problems = []
    for path in repository_text_files():
        if path == Path(__file__).resolve():
            continue  # its docstring shows the pattern
        for document, section in re.findall(r'\b(README(?:\.md)?|docs/[\w.-]+\.md) "([^"\n]+)"', path.read_text()):
            target = REPO / (document if document.endswith(".md") else "README.md")
            if not target.is_file() or section.lower() not in headings(target.read_text()):
                problems.append(f'{path.relative_to(REPO)}: {document} "{section}"')
    assert problems == []


def test_nothing_cites_a_design_document_the_repository_does_not_contain():
    this_file = Path(__file__).resolve()
    problems = []
    for path in repository_text_files():
        if path == this_file:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bDESIGN\b|ANCHORS|\.\./shared\b|shared/", line):
                problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert problems == []


# ---------------------------------------------------------------- commands in code blocks

SHELL_WRAPPERS = {"nohup", "setsid", "time"}


def project_scripts() -> dict[str, str]:
    """`[project.scripts]` of pyproject.toml: command -> "module:function"."""
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("scripts", {})


def check_entry_point(program: str) -> None:
    """Another command of this project (e.g. one a later page documents): its function exists."""
    target = project_scripts().get(program)
    assert target is not None, f"{program} is not a command of this project ([project.scripts] in pyproject.toml)"
    module, _, function = target.partition(":")
    assert hasattr(importlib.import_module(module), function), f"{target} does not exist"


def code_block_commands(markdown_file: Path) -> list[str]:
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", markdown_file.read_text(), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            for command in re.split(r"\s&&\s|;\s", line):
                if command.strip():
                    commands.append(command.strip())
    return commands


def strip_wrappers(tokens: list[str]) -> list[str]:
    """`nohup setsid nice -n 10 OMP_NUM_THREADS=1 .venv/bin/al-run ... > log 2>&1 &` -> `al-run ...`."""
    cut = next((i for i, t in enumerate(tokens) if t in ("&", "|") or re.match(r"\d?>", t)), len(tokens))
    tokens = tokens[:cut]
    while tokens:
        if tokens[0] in SHELL_WRAPPERS or re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
            tokens = tokens[1:]
        elif tokens[0] == "nice":
            tokens = tokens[3:] if tokens[1:2] == ["-n"] else tokens[1:]
        else:
            break
    if tokens:
        tokens[0] = tokens[0].removeprefix(".venv/bin/")
    return tokens


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """One job of a sweep: `sampler=random,entropy` -> `sampler=random` (Hydra's own parser decides)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    single = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            single.append(f"{override.get_key_element()}={first}")
        else:
            single.append(text)
    return single


def check_al_run(args: list[str]) -> None:
    if "--config-dir" in args:  # a user's own folder: composed for real in test_a_model_from_a_config_dir_runs
        return
    if "--status" in args:  # reads a sweep's folder (tests/test_sweep_status.py): one folder, nothing else
        folders = [a for a in args if a not in ("--status", "--json")]
        assert args[0] == "--status" and len(folders) == 1 and "=" not in folders[0], f"al-run {' '.join(args)}"
        return
    overrides = [a for a in args if not a.startswith("-")]
    check_overrides(overrides)
    cfg = compose_config(first_of_each_sweep(overrides), return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.run.dir")  # names the run: resolves every value it depends on


def check_command(command: str) -> None:
    tokens = strip_wrappers(shlex.split(command))
    program, args = tokens[0], tokens[1:]
    if program == "al-run":
        check_al_run(args)
    elif program in ("python", "python3") and args[:2] == ["-m", "al_runner"]:
        check_al_run(args[2:])
    elif program == "al-plot":
        build_parser().parse_args(args)
    elif program in ("python", "python3") and args[0] == "-m":
        assert importlib.util.find_spec(args[1]) is not None, f"no module {args[1]}"
    elif program in ("python", "python3"):
        assert (REPO / args[0]).is_file(), f"no script {args[0]}"
        if args[0] == "scripts/plot_figures.py":
            build_parser().parse_args(args[1:])
    elif program == "make":
        assert re.search(rf"^{re.escape(args[0])}:", (REPO / "Makefile").read_text(), re.M), f"no make target {args[0]}"
    elif program in ("bash", "sh"):
        assert (REPO / args[0]).is_file(), f"no script {args[0]}"
    elif program.startswith("al-"):
        check_entry_point(program)
    # anything else (pip, git, a tool of the user's) is not this project's to check


COMMANDS = [
    (markdown_file, command)
    for markdown_file in DOCS
    for command in code_block_commands(markdown_file)
    if not re.search(r"<[^<>]+>", command)
]


@pytest.mark.parametrize("markdown_file,command", COMMANDS, ids=[f"{doc_id(f)}: {c[:60]}" for f, c in COMMANDS])
def test_every_command_in_the_docs_composes(markdown_file, command):
    check_command(command)


def test_the_command_check_refuses_what_al_run_would_refuse():
    for bad in (
        "al-run schedule.epochs=1.5",
        "al-run sampler=no_such_sampler",
        "al-run task=imagefolder",
        "al-plot --runs",
        "python scripts/no_such_script.py",
        "make no_such_target",
        "al-rn seed=1",
        "bash scripts/no_such_script.sh",
    ):
        with pytest.raises((Exception, SystemExit)):
            check_command(bad)


def test_a_model_from_a_config_dir_runs_as_the_readme_shows(tmp_path):
    """The README's `--config-dir` command, run for real with a model config outside the package's conf/."""
    (command,) = [c for c in code_block_commands(REPO / "README.md") if "--config-dir" in c]
    model = (REPO / "conf" / "model" / "small_cnn.yaml").read_text().replace("name: small_cnn", "name: my_net")
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "my_net.yaml").write_text(model)
    args = shlex.split(command)[1:] + [
        "schedule.cycles=1",
        "model.net.width=8",
        "progress=false",
        f"paths.output={tmp_path / 'out'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "al_runner", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((tmp_path / "out" / "default").glob("synthetic-my_net-*/cycles.csv"))
