#!/usr/bin/env bash
# Rebuilds the committed gRPC/protobuf code in kronicler/proto/ from proto/.
#
# The generator is pinned on purpose, and old: generated code carries its generator's version,
# and code from protoc >= 26 (grpcio-tools >= 1.63) refuses to import under an older protobuf
# (or grpcio) runtime than the one that made it. grpcio-tools 1.49.1 bundles protoc 3.21.6: its
# output uses only the descriptor builder (protobuf >= 3.20) and checks no runtime version, so
# one set of stubs runs on every runtime the OpenTelemetry packages allow, protobuf 3.20 to 7.x
# and grpcio 1.49 onward (CI tests the lowest and the newest: .ci/deps.sh).
#
# The pinned generator lives in its own virtual environment (made on first use, reused after),
# so the result never depends on what else is installed: the same .proto files give the same
# bytes on every machine. The .proto path mirrors the Python package path, so the generated
# imports work as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_VERSION=1.49.1
venv="${KRONICLER_PROTOC_VENV:-${TMPDIR:-/tmp}/kronicler-grpcio-tools-$TOOLS_VERSION}"
if ! "$venv/bin/python" -c "import grpc_tools" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
        "grpcio-tools==$TOOLS_VERSION"
fi
found="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("grpcio-tools"))')"
if [ "$found" != "$TOOLS_VERSION" ]; then
    echo "gen_proto.sh: $venv has grpcio-tools $found, not $TOOLS_VERSION" >&2
    exit 1
fi
rm -rf kronicler/proto
# LC_ALL=C: the glob's order (and so the command line) is the same in every locale.
mapfile -t protos < <(LC_ALL=C ls proto/kronicler/proto/v1/*.proto)
"$venv/bin/python" -m grpc_tools.protoc -I proto \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    "${protos[@]}"
printf '"""Generated protobuf and gRPC code (scripts/gen_proto.sh); do not edit."""\n' \
    > kronicler/proto/__init__.py
cp kronicler/proto/__init__.py kronicler/proto/v1/__init__.py
echo "generated with grpcio-tools $TOOLS_VERSION: $(ls kronicler/proto/v1)"
