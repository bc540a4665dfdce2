"""Regenerate the gRPC stubs in serve/_proto/ from protos/: `python -m serve.codegen`.

The one code-generation command (`make stubs` calls it). It runs grpc_tools' bundled protoc as

    python -m grpc_tools.protoc -Iserve/_proto=protos --python_out=OUT --grpc_python_out=OUT
        --pyi_out=OUT protos/*/v*/*.proto

(gan/v1/generator.proto, and inference/v2/grpc_service.proto: the Open Inference Protocol) so
the stubs import as `from serve._proto.gan.v1 import generator_pb2`, and adds the empty
`__init__.py` files that make serve/_proto an installable package. The output depends on the
grpcio-tools version (its protoc stamps its protobuf version into the code), so the committed
stubs are regenerated with the pinned grpcio-tools; tests/serve/test_stubs.py fails on drift.
Needs grpcio-tools (a dev dependency), never needed at serving time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "serve/_proto"  # the import path the stubs live under, relative to OUT


def proto_files() -> list[Path]:
    return sorted(PROTOS.glob("*/v*/*.proto"))


def generate(out: Path) -> list[Path]:
    """Write the stubs (and package __init__.py files) under `out`; return the files written."""
    from grpc_tools import protoc  # dev-only dependency: imported here, not at module load

    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = ["grpc_tools.protoc", f"-I{PACKAGE}={PROTOS}", f"-I{include}",
            f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}",
            *map(str, proto_files())]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, proto_files()))}")
    written = []
    for proto in proto_files():
        rel = proto.relative_to(PROTOS).parent  # e.g. gan/v1
        for depth in range(len(rel.parts) + 1):  # serve/_proto, serve/_proto/gan, .../v1
            init = out / PACKAGE / Path(*rel.parts[:depth]) / "__init__.py"
            if not init.exists():
                init.write_text("")
    for path in sorted((out / PACKAGE).rglob("*")):
        if path.is_file() and path.suffix in (".py", ".pyi"):
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT,
                        help="root to write serve/_proto/ under (default: this checkout)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
