"""Every `--help` reads well in an 80-column terminal: whole flag names, help text with room."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

from gan.cli import app

COMMANDS = [name for name in typer.main.get_command(app).commands]  # type: ignore[attr-defined]


def _help(*args: str, columns: int = 80) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "gan", *args, "--help"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


def test_every_command_is_listed() -> None:
    assert {"train", "export", "eval", "info", "serve", "generate"} <= set(COMMANDS)
    text = _help()
    assert all(name in text for name in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_with_whole_flags(command: str) -> None:
    text = _help(command)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in text  # nothing cut off
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    tokens = set(text.replace("/", " ").replace(",", " ").split())
    for param in click_command.params:
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("-"):
                assert flag in tokens, f"{flag} is not shown whole in `gan {command} --help`"
    # The help text of an option starts at most 34 columns in (click's layout: beside a short
    # flag, or on the next line under a long one), so it always has 46 columns or more.
    options = lines[next(i for i, x in enumerate(lines) if x == "Options:") + 1:]
    for line in options:
        if line.strip() and not line.lstrip().startswith("-"):
            assert len(line) - len(line.lstrip()) <= 34, line
