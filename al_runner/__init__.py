"""al_runner: an experiment runner for Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019)."""

__version__ = "0.1.0"
