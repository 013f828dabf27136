from al_runner.models.resnet import resnet18_cifar
from al_runner.models.small_cnn import SmallCNN
from al_runner.models.taps import FeatureTaps, global_average_pool

__all__ = ["resnet18_cifar", "SmallCNN", "FeatureTaps", "global_average_pool"]
