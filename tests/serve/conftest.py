"""Fixtures: exported generators (once per session) and a shared default server. tests.helpers
(torch, to export the models) loads only when a test asks for them, so the torch-free tests here
(test_batcher.py) run in a serving-only install too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from serve.server import GeneratorServer


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.helpers import MODELS, export_generator

    folder = tmp_path_factory.getbasetemp() / "models"
    folder.mkdir(exist_ok=True)
    return {name: export_generator(folder, name) for name in MODELS}


@pytest.fixture(scope="module")
def server(models: dict[str, Path]) -> Iterator[GeneratorServer]:
    """One default-ish server for the tests that only talk to it (small batches, so splits
    happen)."""
    from tests.helpers import running

    with running(models["g32"], max_batch_size=8, max_queue_delay_ms=2.0,
                 max_images_per_request=64, max_queue_size=512, metrics_port=0) as s:
        yield s
