"""The `taskmesh` command line, built on taskmesh.client."""

import os

# gRPC's C core may log connection failures to stderr; the CLI reports them itself, on one line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
