"""Errors that the CLI turns into one clear message (no traceback), and how the commands end when stopped."""

import signal

EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, for al-run and al-label alike
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, what a cluster sends before it kills a job: it unwinds exactly like Ctrl-C (locks released, the
    last checkpoint kept; every file is written atomically), so the same command resumes."""


def _raise_terminated(_signum, _frame) -> None:
    raise Terminated()


def terminate_like_ctrl_c() -> None:
    """SIGTERM raises `Terminated` in the main thread from now on (a command's `except KeyboardInterrupt` sees it)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def stop_exit_code(stop: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


def stop_word(stop: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"


class ALRunnerError(Exception):
    """A user-facing problem: bad config, missing data, unusable input."""


class ConfigError(ALRunnerError):
    pass


class DataError(ALRunnerError):
    pass


class NonFiniteLossError(ALRunnerError):
    def __init__(self, cycle: int, epoch: int, batch: int, checkpoint: str | None):
        self.cycle, self.epoch, self.batch, self.checkpoint = cycle, epoch, batch, checkpoint
        kept = (
            f"the last good checkpoint ({checkpoint}) is kept; the same command resumes from it"
            if checkpoint
            else "no cycle had finished yet, so there is no checkpoint"
        )
        super().__init__(
            f"non-finite training loss in cycle {cycle}, epoch {epoch}, batch {batch}: training stopped; "
            f"{kept}. Lower the learning rate or the loss-module weight (lambda)."
        )
