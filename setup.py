"""The compiled inner loops: the JT/T 808 hot path and the nearest search's walk. Everything else is in
pyproject.toml. Both compile without fused multiply-add, so their arithmetic is Python's to the last bit."""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension("shared.jt808._decoder", ["shared/jt808/_decoder.c"], extra_compile_args=_FLAGS),
        Extension(
            "services.dispatcher.domain._h3_walk", ["services/dispatcher/domain/_h3_walk.c"], extra_compile_args=_FLAGS
        ),
    ]
)
