#!/usr/bin/env bash
# Rebuilds the committed gRPC/protobuf code in kronicler/proto/ from proto/ (needs grpcio-tools).
# The .proto path mirrors the Python package path, so the generated imports work as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf kronicler/proto
python -m grpc_tools.protoc -I proto \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    proto/kronicler/proto/v1/*.proto
printf '"""Generated protobuf and gRPC code (scripts/gen_proto.sh); do not edit."""\n' \
    > kronicler/proto/__init__.py
cp kronicler/proto/__init__.py kronicler/proto/v1/__init__.py
echo "generated: $(ls kronicler/proto/v1)"
