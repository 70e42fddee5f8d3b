"""Builds the optional C fast path of the capture decorator; everything else is in pyproject.toml.

``optional=True``: without a compiler (or on an interpreter the C code does not support) the
build goes on without it and the pure-Python wrapper is used, with the same behaviour.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kronicler.otel._fastcall", ["kronicler/otel/_fastcall.c"], optional=True)
    ]
)
