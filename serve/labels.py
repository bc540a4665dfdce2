"""The label rule: which class each image of a request gets, for conditional models.

A conditional model has C = len(class_names) classes, labels 0 to C - 1 in class_names order. A
request for n images gives

    n labels     image i gets labels[i]
    1 label      every image gets it
    no labels    image i gets i % C (the classes in turn: 0, 1, ..., C - 1, 0, 1, ...)

so a request's images are a pure function of (model, latent, labels), with no hidden state. An
unconditional model (no class names) takes no labels. `gan generate --label` names one class,
by name or index (`parse`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LabelError(ValueError):
    """Labels a request cannot use (wrong count, out of range, or for a model without classes)."""


def for_request(values: Sequence[int], num_images: int,
                class_names: Sequence[str]) -> np.ndarray | None:
    """The labels (num_images,) int64 of a request (the rule above); None: unconditional."""
    classes = len(class_names)
    if not classes:
        if len(values):
            raise LabelError("labels given, but this model is unconditional (it has no "
                             "classes): send no labels")
        return None
    if not len(values):
        return np.arange(num_images, dtype=np.int64) % classes
    if len(values) not in (1, num_images):
        raise LabelError(f"{len(values)} labels for {num_images} images: give one label per "
                         f"image ({num_images}) or one for all (1)")
    labels = np.asarray(values, dtype=np.int64)
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise LabelError(f"label {bad[0]} is out of range: this model has {classes} classes "
                         f"(class_names), so labels must be between 0 and {classes - 1}")
    return np.broadcast_to(labels, (num_images,)).copy()  # one for all -> (num_images,)


def parse(text: str, class_names: Sequence[str]) -> int:
    """A class given by name (case-insensitive) or by index -> its index, for `--label`."""
    if not class_names:
        raise LabelError(f"--label {text}: this model is unconditional (it has no classes); "
                         "leave --label out")
    folded = [name.casefold() for name in class_names]
    if text in class_names:  # exact first: names that differ only in case stay reachable
        return list(class_names).index(text)
    if folded.count(text.casefold()) == 1:
        return folded.index(text.casefold())
    if text.strip().lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(class_names):
            return index
        raise LabelError(f"--label {text}: out of range, this model has {len(class_names)} "
                         f"classes (0 to {len(class_names) - 1}): {', '.join(class_names)}")
    raise LabelError(f"--label {text}: no such class; give an index (0 to "
                     f"{len(class_names) - 1}) or one of: {', '.join(class_names)}")
