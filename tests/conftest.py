"""Suite-wide settings: a private data cache, and the real Fashion-MNIST files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Decompressed datasets go to a cache private to this test session, never the user's ~/.cache.
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="gan-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return
    skip = pytest.mark.skip(reason="no real Fashion-MNIST: apt-get install dataset-fashion-mnist")
    for item in items:
        if "fashion_mnist" in item.keywords:
            item.add_marker(skip)
