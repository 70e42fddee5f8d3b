#!/usr/bin/env bash
# Installs Kronicler twice more, each into a fresh virtual environment: once with every
# dependency at its lowest supported version (.ci/deps-lowest.txt, pyproject.toml's floors) and
# once at the newest versions the index serves, and runs a focused subset in each: the import,
# the decorator, the SDK exporter, a gRPC round trip of every query, and OTLP received over gRPC
# and HTTP. The full suite runs once, in the main environment (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="$(mktemp -d "${TMPDIR:-/tmp}/kronicler-deps.XXXXXX")"
trap 'rm -rf "$work"' EXIT
SUBSET=(
    tests/test_capture.py
    tests/test_capture_sdk.py
    tests/otel/test_exporter.py
    tests/server/test_query_service.py
    tests/server/test_otlp.py
    tests/server/test_otlp_http.py
)
TEST_PACKAGES=(pytest opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http)

run_set() {
    local name="$1"
    shift
    local venv="$work/$name"
    echo "== dependency set: $name"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
        "$@" "$root" "${TEST_PACKAGES[@]}"
    "$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -iE '^(grpcio|protobuf|opentelemetry-(api|sdk|proto)|numpy|zstandard) ' || true
    # From a copy of the tests only, so the installed package (not the checkout) is imported.
    mkdir -p "$work/$name-run"
    cp -r "$root/tests" "$work/$name-run/"
    (cd "$work/$name-run" && "$venv/bin/python" -c \
        "import kronicler, kronicler.server, kronicler.proto.v1.query_pb2_grpc; \
         assert kronicler.__file__.startswith('$venv'), kronicler.__file__" \
        && "$venv/bin/python" -m pytest -q -p no:cacheprovider "${SUBSET[@]}")
}

run_set lowest -c "$root/.ci/deps-lowest.txt"
run_set newest --upgrade
