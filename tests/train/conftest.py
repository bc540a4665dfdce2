from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 4-step run shared by the tests that only read its outputs."""
    return train_tiny(tmp_path_factory.mktemp("run") / "run", max_steps=4)
