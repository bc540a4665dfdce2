"""Read the docstring under each dataclass field, so CLI help texts come from the config itself.

    @dataclass
    class C:
        lr: float = 2e-4
        \"\"\"Adam learning rate.\"\"\"

    field_docs(C) == {"lr": "Adam learning rate."}
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from enum import Enum
from itertools import pairwise
from pathlib import Path
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Map each annotated field of `cls` to the string literal under it, folded to one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def help_for(cls: type, name: str) -> str:
    """The help text of field `name` of `cls` (plain text: gan.cli turns rich markup off, so
    "[batch, C, H, W]" shows as written); fails loudly if the field has no docstring."""
    return field_docs(cls)[name]


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of `values`: typer shows and checks them as the option's choices."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def plain(value: object) -> Any:
    """A CLI value as a config field wants it: an Enum's value, a Path as str."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value
