from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import pytest

from gan.cli import main

CliResult = tuple[int, str, str]


@pytest.fixture
def gan_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> Callable[..., CliResult]:
    """Run `gan ARGS...` in-process through the real entry point: (exit code, stdout, stderr)."""

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["gan", *args])
        monkeypatch.setenv("COLUMNS", "200")  # help tables wide enough to show whole flags
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            # main() points logging at this capture's stderr, which closes after the test:
            # give pytest its own handlers back so later log lines do not hit a closed file
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        return code, out, err

    return invoke
