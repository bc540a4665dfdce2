"""Image format names <-> the wire enum gan.v1.ImageFormat (shared by server and client)."""

from __future__ import annotations

from serve._proto.gan.v1 import generator_pb2 as pb

TO_PB = {"png": pb.IMAGE_FORMAT_PNG, "raw_uint8": pb.IMAGE_FORMAT_RAW_UINT8,
         "raw_float32": pb.IMAGE_FORMAT_RAW_FLOAT32}
FROM_PB = {v: k for k, v in TO_PB.items()} | {pb.IMAGE_FORMAT_UNSPECIFIED: "png"}
