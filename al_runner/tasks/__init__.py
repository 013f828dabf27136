from al_runner.tasks.base import Metric, Task
from al_runner.tasks.classification import ClassificationTask

__all__ = ["Metric", "Task", "ClassificationTask"]
