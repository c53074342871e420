import pytest
import torch


def pytest_collection_modifyitems(config, items):
    # CUDA tests are collected everywhere and skipped without a device (no GPU query at import).
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
