"""The compiled inner loops: the JT/T 808 and JSON ping hot paths, a position's H3 cell, the nearest search's walk and
the live map's position update. Everything else is in pyproject.toml. All compile without fused multiply-add, so
their arithmetic is Python's to the last bit."""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-ffp-contract=off"]
_INCLUDE = ["."]
"""The C files include the project's own headers by their path from the root (`shared/native/`)."""
_HEADERS = ["shared/native/civil_days.h", "shared/native/position_record.h", "shared/native/latlng_to_cell.h"]
"""Listed so that editing one rebuilds the modules that include it."""

setup(
    ext_modules=[
        Extension(
            "shared.jt808._decoder",
            ["shared/jt808/_decoder.c"],
            include_dirs=_INCLUDE,
            depends=_HEADERS,
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "services.ingest.domain._json_ping",
            ["services/ingest/domain/_json_ping.c"],
            include_dirs=_INCLUDE,
            depends=_HEADERS,
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "shared._h3_cell", ["shared/_h3_cell.c"], include_dirs=_INCLUDE, depends=_HEADERS, extra_compile_args=_FLAGS
        ),
        Extension(
            "services.dispatcher.domain._h3_walk", ["services/dispatcher/domain/_h3_walk.c"], extra_compile_args=_FLAGS
        ),
        Extension(
            "services.dispatcher.domain._index_update",
            ["services/dispatcher/domain/_index_update.c"],
            include_dirs=_INCLUDE,
            depends=_HEADERS,
            extra_compile_args=_FLAGS,
        ),
    ]
)
