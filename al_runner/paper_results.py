"""Old import path of the paper's numbers, kept working: they live in `al_runner.analysis.paper`."""

from al_runner.analysis.paper import *  # noqa: F401,F403
from al_runner.analysis.paper import __all__  # noqa: F401
