"""The one error type the figure CLI turns into a message on stderr (exit code 2, no traceback)."""

from al_runner.errors import ALRunnerError


class FigureDataError(ALRunnerError):
    """Unusable input for the figures: no runs found, or an empty / malformed CSV (the message names it)."""
