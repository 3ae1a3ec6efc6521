"""Regenerate everything derived from protos/: Python stubs (with .pyi), Envoy's descriptor set and
the OpenAPI document (gateway/generated/openapi.json and .yaml).

Run with `make generate` (or `python scripts/generate.py`). Outputs are git-ignored.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# The OpenAPI step imports gateway/ and taskmesh/ from the sources: they need not be installed
# (the image's codegen venv has only the code generation tools).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PROTO_ROOT = ROOT / "protos"
DESCRIPTOR_SET = ROOT / "gateway" / "generated" / "taskmesh.pb"


def _plugin(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise SystemExit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return found


def main() -> int:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "taskmesh").rglob("*.proto"))
    grpc_tools_protos = Path(protoc.__file__).parent / "_proto"
    # googleapis-common-protos installs google/api/*.proto here (a namespace package, no __file__).
    site_packages = sysconfig.get_paths()["purelib"]
    DESCRIPTOR_SET.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{site_packages}",
        f"-I{grpc_tools_protos}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        # Typed stubs for the generated gRPC modules (mypy-protobuf).
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={ROOT}",
        f"--descriptor_set_out={DESCRIPTOR_SET}",
        "--include_imports",
        "--include_source_info",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        print("protoc failed", file=sys.stderr)
        return int(code)
    print(f"generated stubs for {len(sources)} protos and {DESCRIPTOR_SET.relative_to(ROOT)}")
    # The OpenAPI document comes from the descriptor set just written (imported late: it needs it).
    from gateway.openapi import write_documents

    for path in write_documents(DESCRIPTOR_SET, DESCRIPTOR_SET.parent):
        print(f"generated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
