"""Object detection (PASCAL VOC, SSD): paper Sec. 4.2, Fig. 6."""

from al_runner.tasks.detection.models import SSDHeadOutputs, ssd300_vgg16, ssdlite320_mobilenet_v3_large
from al_runner.tasks.detection.multibox import (
    MultiBoxLoss,
    SSDPostprocess,
    entropy_over_detections,
    entropy_over_top_anchors,
)
from al_runner.tasks.detection.task import VOCDetectionTask
from al_runner.tasks.detection.voc_eval import VOC07MeanAP, voc07_average_precision
from al_runner.tasks.detection.voc_folder import VOCFolderTask

__all__ = [
    "SSDHeadOutputs",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "MultiBoxLoss",
    "SSDPostprocess",
    "entropy_over_detections",
    "entropy_over_top_anchors",
    "VOCDetectionTask",
    "VOCFolderTask",
    "VOC07MeanAP",
    "voc07_average_precision",
]
