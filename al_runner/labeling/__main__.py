"""`python -m al_runner.labeling ...`: the same command line as `al-label`."""

from al_runner.labeling.cli import main

if __name__ == "__main__":
    main()
