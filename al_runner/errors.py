"""Errors that the CLI turns into one clear message (no traceback)."""


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
