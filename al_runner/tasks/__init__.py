"""Tasks: each owns its data, per-sample loss, metric and uncertainty (contract in `base`).

Task packages (`classification`, `detection`, `pose`) are imported by their configs' `_target_`,
so importing one never pulls in another's dependencies.
"""

from al_runner.tasks.base import Metric, Task

__all__ = ["Metric", "Task"]
