"""The generator model file's identity, shared by its writer (export) and its readers (serve, info).

Torch-free on purpose: the serving install and `gan info` import it.
"""

from __future__ import annotations

import hashlib
import os

FORMAT = "dcgan-forge/generator"
"""metadata_props["format"] of every exported generator."""
FORMAT_VERSION = "1"
"""metadata_props["format_version"] written by this version."""
READABLE_VERSIONS = ("1",)
"""Format versions this version can serve."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
