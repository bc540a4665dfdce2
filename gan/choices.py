"""Choices that several configs share, and the one check of a choice field.

No heavy import here: the configs (and so `gan --help`) import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gan.errors import UserError

PROVIDERS = ("auto", "tensorrt", "cuda", "cpu")
"""ONNX Runtime execution providers (gan.session): auto is the best one that really loads."""


def check_choice(name: str, value: object, allowed: Sequence[object],
                 error: type[UserError] = UserError) -> None:
    """Raise `error` with one line, "unknown NAME VALUE: use one of A, B", for a value not in
    `allowed`."""
    if value not in allowed:
        raise error(f"unknown {name} {value!r}: use one of {', '.join(map(str, allowed))}")


def check_choices(config: object, allowed: Mapping[str, Sequence[object]],
                  error: type[UserError]) -> None:
    """check_choice for each field name of `config` in `allowed`, in order."""
    for name, values in allowed.items():
        check_choice(name, getattr(config, name), values, error)
