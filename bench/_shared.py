"""Paths the benchmarks share: the real COCO sample (`config.COCO_SAMPLE_DIR`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402


def coco_sample_dir():
    """The shared real COCO sample folder (it may be missing: the benchmarks then use synthetic data)."""
    return config.COCO_SAMPLE_DIR
