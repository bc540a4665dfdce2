from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_UINT8: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_FLOAT32: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_RAW_UINT8: ImageFormat
IMAGE_FORMAT_RAW_FLOAT32: ImageFormat

class GenerateRequest(_message.Message):
    __slots__ = ("num_images", "seed", "latent", "format", "labels")
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    num_images: int
    seed: int
    latent: _containers.RepeatedScalarFieldContainer[float]
    format: ImageFormat
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, num_images: _Optional[int] = ..., seed: _Optional[int] = ..., latent: _Optional[_Iterable[float]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "height", "width", "channels", "format")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    height: int
    width: int
    channels: int
    format: ImageFormat
    def __init__(self, data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "seed", "model_id", "first_index")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    seed: int
    model_id: str
    first_index: int
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., seed: _Optional[int] = ..., model_id: _Optional[str] = ..., first_index: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "nz", "height", "width", "channels", "class_names", "dataset", "max_images_per_request", "max_batch_size", "max_message_bytes", "provider", "metadata", "max_images_per_stream")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NZ_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_STREAM_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    nz: int
    height: int
    width: int
    channels: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    dataset: str
    max_images_per_request: int
    max_batch_size: int
    max_message_bytes: int
    provider: str
    metadata: _containers.ScalarMap[str, str]
    max_images_per_stream: int
    def __init__(self, model_id: _Optional[str] = ..., nz: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., dataset: _Optional[str] = ..., max_images_per_request: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., provider: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., max_images_per_stream: _Optional[int] = ...) -> None: ...
