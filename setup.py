"""The compiled inner loops: the JT/T 808 hot path and the nearest search's bucket scan. Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shared.jt808._decoder", ["shared/jt808/_decoder.c"], extra_compile_args=["-O2"]),
        Extension(
            "services.dispatcher.domain._bucket_scan",
            ["services/dispatcher/domain/_bucket_scan.c"],
            extra_compile_args=["-O2"],
        ),
    ]
)
