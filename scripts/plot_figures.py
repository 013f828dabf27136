#!/usr/bin/env python
"""The same command as `al-plot`, for a checkout without an install: regenerate Fig. 4-8 and the results
tables from sweep CSVs. Run with --help for usage."""

import sys
from pathlib import Path

try:
    from al_runner.figures.cli import main
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from al_runner.figures.cli import main

if __name__ == "__main__":
    sys.exit(main())
