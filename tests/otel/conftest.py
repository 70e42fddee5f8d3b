from tests.otel.fixtures import sdk, store  # noqa: F401
