"""Human pose (MPII, paper Sec. 4.3): annotations, crops/heatmaps, PCKh, the stacked hourglass."""

from al_runner.tasks.pose.hourglass import StackedHourglass, hourglass
from al_runner.tasks.pose.metric import PCKh
from al_runner.tasks.pose.task import MPIITask

__all__ = ["MPIITask", "PCKh", "StackedHourglass", "hourglass"]
