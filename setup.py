"""Ships the top-level conf/ inside the package as `al_runner.conf` (pyproject.toml holds the rest).

conf/ stays where it is in the repository; a wheel (or `pip install .`) gets it as al_runner/conf/,
which `al_runner.cli` finds when there is no source checkout around it.
"""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

CONF = Path("conf")
conf_packages = ["al_runner.conf"] + [
    "al_runner.conf." + ".".join(d.relative_to(CONF).parts) for d in sorted(CONF.rglob("*")) if d.is_dir()
]
setup(
    # hydra_plugins is a namespace shared with Hydra's own plugins (joblib, submitit): ours are found as namespace
    # packages, or an installed al-run could not load the launchers in hydra_plugins.al_runner_launchers
    # (hydra_plugins.al_runner_config registers the typed schema and the run-id resolver with Hydra)
    packages=find_packages(include=["al_runner*"])
    + find_namespace_packages(include=["hydra_plugins.*"])
    + conf_packages,
    package_dir={"al_runner.conf": "conf"},
    package_data={name: ["*.yaml"] for name in conf_packages},
)
