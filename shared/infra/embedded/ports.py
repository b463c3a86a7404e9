"""Ports for the servers a test or a benchmark starts on loopback.

A port found by binding to port 0 comes from the kernel's ephemeral range, which every outgoing connection on the
machine draws from too: between the choice and the server's bind, a client socket elsewhere could take it (a
clean-clone CI run once failed so: the demo's Kafka controller found its port in use). Ports here come from below
that range, and each is reserved in a shared directory for as long as the process that took it lives, so parallel
test workers and benchmark runs never hand out the same one, even while a stopped server waits to restart on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.infra.embedded.process import bindable, pid_alive

LOWEST = 20000
"""Above the ports the project's servers default to below the ephemeral range (up to the demo's 19,092; its
PostgreSQL's 55,433 and `kuaijing up`'s 55,432 lie above the range)."""

_DIRECTORY = Path(tempfile.gettempdir()) / f"kuaijing-ports-{os.getuid()}"


def reserve_port(*, pair: bool = False) -> int:
    """A loopback port no one listens on, reserved for this process; with `pair`, its successor too (the embedded
    Kafka's broker and controller)."""
    _DIRECTORY.mkdir(exist_ok=True)
    with _locked():
        for port in _candidates(_ephemeral_low() - (2 if pair else 1)):
            ports = (port, port + 1) if pair else (port,)
            if all(_free(p) for p in ports):
                for p in ports:
                    (_DIRECTORY / str(p)).write_text(str(os.getpid()))
                return port
    raise OSError(f"no free port between {LOWEST} and the ephemeral range")


def _ephemeral_low() -> int:
    """The kernel's first ephemeral port (Linux; 32768, its default, elsewhere)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def _candidates(highest: int) -> Iterator[int]:
    """Every port from LOWEST to `highest` once, from a random start: processes starting together seldom scan the
    same ports first."""
    span = highest - LOWEST + 1
    start = random.randrange(span)
    for offset in range(span):
        yield LOWEST + (start + offset) % span


def _free(port: int) -> bool:
    """Not reserved by a living process, and nothing listens on it."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        owner = int((_DIRECTORY / str(port)).read_text())
        if pid_alive(owner):
            return False
    return bindable("127.0.0.1", port)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One reservation at a time across the machine's processes: the check and the claim are one step."""
    with (_DIRECTORY / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
