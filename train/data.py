"""Datasets decoded once into an in-memory uint8 tensor; per-batch work on whole batches.

The textbook pipeline decodes every image through PIL in DataLoader workers on every epoch; on a
small machine those workers compete with the training math. Here a dataset is read once into
`images` (N, C, h, w) uint8 on the training device, and a batch is an index gather followed by one
float conversion, pad or resize, and normalisation to [-1, 1] for the whole batch.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan.atomic import atomic_write
from gan.errors import UserError
from train.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(UserError):
    """The dataset cannot be found or read."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dcgan-forge" / "data"


@dataclass
class ImageData:
    """A whole dataset in memory."""

    images: torch.Tensor  # (N, C, h, w) uint8
    labels: torch.Tensor | None  # (N,) int64, None for unlabelled folders
    class_names: list[str]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


def class_labels(config: TrainConfig, images: ImageData) -> torch.Tensor | None:
    """The (N,) labels a --conditional run trains with; None for an unconditional one."""
    if not config.conditional:
        return None
    if images.labels is None or len(images.class_names) < 2:
        raise ConfigError(f"--conditional needs labelled data with at least 2 classes; "
                          f"{config.data_dir or config.dataset} has none (a folder dataset needs "
                          "one sub-folder per class)")
    return images.labels


def load(config: TrainConfig, *, download: bool = True) -> ImageData:
    """Read the configured dataset (on the CPU)."""
    return read(config.dataset, config.data_dir, split=config.split,
                image_size=config.image_size, channels=config.channels, download=download)


def read(dataset: str, data_dir: str | None, *, split: str, image_size: int, channels: int,
         download: bool = True) -> ImageData:
    """Read a dataset without a training config (evaluation, the classifier): built-in ones at
    their native size, a folder decoded at image_size."""
    if dataset == "folder":
        return _load_folder(Path(data_dir or ""), image_size, channels)
    return _load_torchvision(dataset, data_dir, split, download=download)


def to_model_input(batch: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (B, C, h, w) -> float (B, C, S, S) in [-1, 1] (see `fit`)."""
    return fit(batch.float().div_(127.5).sub_(1.0), image_size)


def fit(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """float (B, C, h, w) in [-1, 1] -> (B, C, S, S): 28 px images are padded to 32 with the
    background value, other sizes are resized (bilinear, antialiased when shrinking)."""
    h = x.shape[-1]
    if h == image_size:
        return x
    if image_size - h == 4:  # 28 -> 32: pad keeps every pixel exact
        return F.pad(x, (2, 2, 2, 2), value=-1.0)
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                         antialias=h > image_size, align_corners=False)


# Built-in datasets ------------------------------------------------------------------------------

def _builtin_class(name: str) -> type:
    from torchvision import datasets

    return {"fashion-mnist": datasets.FashionMNIST, "mnist": datasets.MNIST,
            "cifar10": datasets.CIFAR10}[name]


def prepare_debian_fashion_mnist(root: Path) -> bool:
    """Lay out Debian's dataset-fashion-mnist files as torchvision expects:
    root/FashionMNIST/raw/<name> (the .gz files decompressed once). False if not installed."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return False
    raw = root / "FashionMNIST" / "raw"
    for gz in sorted(DEBIAN_FASHION_MNIST.glob("*-ubyte.gz")):
        target = raw / gz.name[: -len(".gz")]
        if not target.is_file():
            with gzip.open(gz, "rb") as src:  # atomic: parallel ranks never read half a file
                atomic_write(target, functools.partial(shutil.copyfileobj, src))
    return True


def _load_torchvision(dataset: str, data_dir: str | None, split: str, *, download: bool
                      ) -> ImageData:
    cls = _builtin_class(dataset)
    if data_dir:
        root = Path(data_dir)
    else:
        root = cache_dir()
        if dataset == "fashion-mnist" and prepare_debian_fashion_mnist(root):
            log.info("using Debian's dataset-fashion-mnist files from %s", DEBIAN_FASHION_MNIST)
    train = split == "train"
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DataError(_missing(dataset, split, root, "not found")) from None
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as e:  # no network, a proxy, a half download: all the same to the user
            why = f"download failed ({type(e).__name__})"
            raise DataError(_missing(dataset, split, root, why)) from e
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, h, w)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return ImageData(images.contiguous(), labels, list(ds.classes))


def _missing(dataset: str, split: str, root: Path, why: str) -> str:
    hint = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or "
            if dataset == "fashion-mnist" else "")
    return (f"{dataset} {split} split not found under {root} and {why}: {hint}"
            f"pass --data-dir pointing to torchvision's layout of it")


# Your own images --------------------------------------------------------------------------------

def _load_folder(folder: Path, image_size: int, channels: int) -> ImageData:
    """Class sub-folders (ImageFolder layout) or a flat folder; each image decoded once,
    centre-cropped to a square and resized to image_size."""
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder} is not a directory of images")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        files = [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).rglob("*"))
                 if p.suffix.lower() in IMAGE_SUFFIXES]
        loose = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            log.warning("%d images directly in %s are ignored: with class sub-folders, only "
                        "their images are used", len(loose), folder)
    else:
        files = [(p, 0) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    mode = "L" if channels == 1 else "RGB"
    arrays = [_decode(p, image_size, mode) for p, _ in files]
    images = torch.from_numpy(np.stack(arrays))  # (N, h, w) or (N, h, w, 3)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.tensor([i for _, i in files], dtype=torch.int64) if classes else None
    log.info("decoded %d images from %s (%d classes)", len(files), folder, len(classes))
    return ImageData(images.contiguous(), labels, classes)


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            im = opened.convert(mode)
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            square = im.crop((left, top, left + side, top + side))
            return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from e
