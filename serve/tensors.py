"""The served generator as an Open Inference Protocol (v2) model: its tensor metadata, and a
request's input tensors -> the latent and labels of a batcher job. Shared by the v2 gRPC
servicer (serve.v2) and the HTTP app (serve.http), which only decode their wire formats.

    inputs   z       FP32  [n, nz]   the latent, one row per image
             labels  INT64 [n]       conditional models only; [1]: one class for all, absent:
                                     the classes in turn (serve.labels' rule)
    output   images  FP32  [n, C, H, W] in [-1, 1] (a float model) or UINT8 [n, H, W, C]
                     (a uint8 model): exactly what ONNX Runtime returns

Extension: a request without z but with the request parameters num_images (and seed) gets the
seed's latent (serve.latent's rule), so the same images as gan.v1 Generate with that seed; a
missing seed is drawn at random and returned as the response parameter seed. Every check
reuses the gan.v1 rules (latent.from_values: finite values; labels.for_request: counts and
range) and ends in Abort(INVALID_ARGUMENT) before anything is queued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from gan.contract import GeneratorInfo
from serve import labels, latent
from serve.admission import Abort

PLATFORM = "onnxruntime_onnx"
VERSION = "1"  # one file, one version
EXTENSIONS = ("binary_tensor_data", "seeded_generation")

# v2 datatypes -> numpy (raw contents are little-endian, row-major, unpadded)
DATATYPES = {"BOOL": np.dtype("?"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"),
             "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("i1"),
             "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
             "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}

_BAD = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, v2 datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class InputTensor:
    """One input as sent: `data` is raw little-endian bytes, a (flat or nested) sequence of
    elements, or None (no data sent)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | Sequence[object] | None


@dataclass(frozen=True)
class Admitted:
    """A valid request: z (n, nz) float32, labels (n,) int64 or None, the seed it was drawn from
    (None for an explicit z)."""

    z: np.ndarray
    labels: np.ndarray | None
    seed: int | None


class V2Model:
    """One generator under its v2 name: metadata, and request validation."""

    def __init__(self, name: str, info: GeneratorInfo, provider: str, *, max_images: int,
                 max_message_bytes: int) -> None:
        self.name = name
        self.info = info
        self.provider = provider
        self.max_images = max_images
        self.max_message_bytes = max_message_bytes
        c, h, w = info.channels, info.height, info.width
        self.inputs = [TensorSpec("z", "FP32", (-1, info.nz))]
        if info.conditional:
            self.inputs.append(TensorSpec("labels", "INT64", (-1,)))
        self.output = (TensorSpec("images", "FP32", (-1, c, h, w)) if info.output == "float"
                       else TensorSpec("images", "UINT8", (-1, h, w, c)))

    def check(self, name: str, version: str) -> None:
        """Abort(NOT_FOUND) unless (name, version) is this model ("" : its one version)."""
        if name != self.name or version not in ("", VERSION):
            which = f"{name!r}" + (f" version {version!r}" if version else "")
            raise Abort(grpc.StatusCode.NOT_FOUND, f"unknown model {which}: this server serves "
                                                   f"{self.name!r} version {VERSION}")

    def metadata(self) -> dict[str, object]:
        """The v2 model metadata (HTTP adds `parameters`: the self-description)."""
        return {"name": self.name, "versions": [VERSION], "platform": PLATFORM,
                "inputs": [t.as_dict() for t in self.inputs], "outputs": [self.output.as_dict()]}

    def parameters(self) -> dict[str, str]:
        """The model's self-description as strings: the ONNX metadata props, the provider in
        use and the serving limits."""
        return {**self.info.metadata, "model_id": self.info.model_id, "provider": self.provider,
                "max_images_per_request": str(self.max_images)}

    def admit(self, inputs: Sequence[InputTensor], parameters: Mapping[str, object],
              outputs: Sequence[str] = ()) -> Admitted:
        """Validate a request -> its latent and labels, or Abort(INVALID_ARGUMENT)."""
        for name in outputs:
            if name != self.output.name:
                raise Abort(_BAD, f"unknown output {name!r}: this model has one output, "
                                  f"{self.output.name!r}")
        given = self._by_name(inputs)
        try:
            z, seed = self._latent(given.get("z"), parameters)
            classes = self._labels(given.get("labels"), len(z))
        except (latent.LatentError, labels.LabelError) as e:
            raise Abort(_BAD, str(e)) from None
        per_image = math.prod(self.output.shape[1:]) * DATATYPES[self.output.datatype].itemsize
        if len(z) * per_image > self.max_message_bytes - 4096:
            raise Abort(_BAD, f"{len(z)} images of {per_image} bytes exceed the "
                              f"{self.max_message_bytes}-byte message limit: ask for fewer")
        return Admitted(z=z, labels=classes, seed=seed)

    def _by_name(self, inputs: Sequence[InputTensor]) -> dict[str, InputTensor]:
        known = {"z", "labels"}  # labels on an unconditional model: labels' own clear refusal
        given: dict[str, InputTensor] = {}
        for t in inputs:
            if t.name not in known:
                wants = ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in self.inputs)
                raise Abort(_BAD, f"unknown input {t.name!r}: this model takes {wants}")
            if t.name in given:
                raise Abort(_BAD, f"input {t.name!r} is given twice")
            given[t.name] = t
        return given

    def _latent(self, z: InputTensor | None,
                parameters: Mapping[str, object]) -> tuple[np.ndarray, int | None]:
        """-> (z (n, nz) float32, the seed or None) from input z or the seed parameters."""
        n_param, seed_param = _int_param(parameters, "num_images"), _int_param(parameters, "seed")
        nz = self.info.nz
        if z is None:
            if n_param is None:
                raise Abort(_BAD, f"no input z: send z FP32 [n, {nz}], or the request "
                                  "parameter num_images (and seed) to draw it from a seed")
            self._check_rows(n_param, "num_images")
            seed = latent.random_seed() if seed_param is None else seed_param
            return latent.from_seed(seed, n_param, nz), seed
        if n_param is not None or seed_param is not None:
            raise Abort(_BAD, "give input z or the parameters num_images/seed, not both")
        _check_type(z, "FP32")
        if len(z.shape) != 2 or z.shape[1] != nz:
            raise Abort(_BAD, f"input z has shape {list(z.shape)}, expected [n, {nz}]")
        self._check_rows(z.shape[0], "input z's rows")
        return latent.from_values(_decode(z), z.shape[0], nz), None

    def _labels(self, given: InputTensor | None, n: int) -> np.ndarray | None:
        if given is None:
            return labels.for_request((), n, self.info.class_names)
        _check_type(given, "INT64")
        if len(given.shape) != 1:
            raise Abort(_BAD, f"input labels has shape {list(given.shape)}, expected [{n}] "
                              "(one class per image) or [1] (one for all)")
        return labels.for_request(_decode(given).tolist(), n, self.info.class_names)

    def _check_rows(self, n: int, what: str) -> None:
        if not 1 <= n <= self.max_images:
            raise Abort(_BAD, f"{what} must be between 1 and {self.max_images}, got {n}")


def _int_param(parameters: Mapping[str, object], key: str) -> int | None:
    value = parameters.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise Abort(_BAD, f"parameter {key} must be an integer, got {value!r}")
    return value


def _check_type(t: InputTensor, datatype: str) -> None:
    if t.datatype != datatype:
        raise Abort(_BAD, f"input {t.name} has datatype {t.datatype!r}, expected {datatype}")
    if any(d < 0 for d in t.shape):
        raise Abort(_BAD, f"input {t.name} has shape {list(t.shape)}: sizes must not be "
                          "negative")


def _decode(t: InputTensor) -> np.ndarray:
    """A checked input's elements, flat, in its datatype."""
    dtype, count = DATATYPES[t.datatype], math.prod(t.shape)
    if t.data is None:
        raise Abort(_BAD, f"input {t.name} has no data")
    if isinstance(t.data, bytes | bytearray | memoryview):
        if len(t.data) != count * dtype.itemsize:
            raise Abort(_BAD, f"input {t.name} has {len(t.data)} bytes of data, expected "
                              f"{count} x {dtype.itemsize} for shape {list(t.shape)}")
        return np.frombuffer(t.data, dtype=dtype)
    try:
        values = np.asarray(t.data)
    except ValueError:  # ragged nesting
        raise Abort(_BAD, f"input {t.name}'s data is not a regular array") from None
    kinds = "fiu" if dtype.kind == "f" else "iu"
    if values.size and values.dtype.kind not in kinds:
        raise Abort(_BAD, f"input {t.name}'s data must be {t.datatype} numbers")
    if values.size != count:
        raise Abort(_BAD, f"input {t.name} has {values.size} elements, expected {count} for "
                          f"shape {list(t.shape)}")
    return values.astype(dtype).ravel()
