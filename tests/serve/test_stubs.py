"""The committed stubs in serve/_proto/ are exactly what `python -m serve.codegen` makes now."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve import codegen

pytest.importorskip("grpc_tools")


def test_committed_stubs_match_protos(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    assert fresh, "codegen wrote nothing"
    committed_root = codegen.ROOT / codegen.PACKAGE
    fresh_names = {p.relative_to(tmp_path / codegen.PACKAGE) for p in fresh}
    committed_names = {p.relative_to(committed_root) for p in committed_root.rglob("*")
                       if p.is_file() and p.suffix in (".py", ".pyi")}
    assert fresh_names == committed_names, "stub files differ: run `make stubs` and commit"
    for name in sorted(fresh_names):
        new = (tmp_path / codegen.PACKAGE / name).read_bytes()
        old = (committed_root / name).read_bytes()
        assert new == old, f"serve/_proto/{name} is stale: run `make stubs` and commit"


def test_stubs_import_as_the_versioned_package() -> None:
    from serve._proto.gan.v1 import generator_pb2, generator_pb2_grpc

    assert generator_pb2.DESCRIPTOR.package == "gan.v1"
    assert hasattr(generator_pb2_grpc, "GeneratorStub")


def test_the_open_inference_protocol_stubs_keep_the_published_names() -> None:
    """protos/inference/v2 -> serve._proto.inference.v2, but the wire names stay the published
    ones (package `inference`), or no Triton or KServe client would find the service."""
    from serve._proto.inference.v2 import grpc_service_pb2, grpc_service_pb2_grpc

    assert grpc_service_pb2.DESCRIPTOR.package == "inference"
    service = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert hasattr(grpc_service_pb2_grpc, "GRPCInferenceServiceStub")
    assert any(p.parts[-3:] == ("inference", "v2", "grpc_service.proto")
               for p in codegen.proto_files())
