"""The gateway lifts its own open-files limit: a default soft limit (often 1,024) must not cap the terminals."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource
from services.ingest.gateway import allow_many_connections
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(allow_many_connections(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    returned, soft, hard = map(int, done.stdout.split())
    assert hard > 256
    assert returned == soft == hard
