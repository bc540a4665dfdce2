"""Fixtures: an exported generator for the CLI tests (shared with tests/serve via the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.support import export_generator


@pytest.fixture(scope="session")
def g32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "models"
    folder.mkdir(exist_ok=True)
    return export_generator(folder, "g32")
