"""The one compiled module: the JT/T 808 hot path (shared/jt808/_decoder.c). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("shared.jt808._decoder", ["shared/jt808/_decoder.c"], extra_compile_args=["-O2"])])
