"""Builds the optional C fast paths (the capture decorator's wrapper, the SDK-span conversion loop,
the column pages' decoding loop);
everything else is in pyproject.toml.

``optional=True``: without a compiler (or on an interpreter the C code does not support) the
build goes on without them and the pure-Python code is used, with the same behaviour.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kronicler.otel._fastcall", ["kronicler/otel/_fastcall.c"], optional=True),
        Extension("kronicler.otel._fastrows", ["kronicler/otel/_fastrows.c"], optional=True),
        Extension("kronicler.db._fastdecode", ["kronicler/db/_fastdecode.c"], optional=True),
    ]
)
