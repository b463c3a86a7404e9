"""The ports tests and benchmarks start servers on: below the ephemeral range, never handed out twice while their
taker lives, and never one something listens on."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from subprocess import PIPE

import pytest

from shared.infra.embedded import ports
from shared.infra.embedded.ports import LOWEST, reserve_port


def test_ports_come_from_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    taken = [reserve_port() for _ in range(50)] + [
        p + d for p in [reserve_port(pair=True) for _ in range(10)] for d in (0, 1)
    ]
    assert len(set(taken)) == len(taken)
    assert all(LOWEST <= port < ports._ephemeral_low() for port in taken)


def scan_from(monkeypatch: pytest.MonkeyPatch, first: int) -> None:
    def candidates(highest: int) -> Iterator[int]:
        yield from range(first, first + 100)

    monkeypatch.setattr(ports, "_candidates", candidates)


def test_a_port_another_living_process_reserved_is_skipped_and_taken_once_it_has_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = "import sys; from shared.infra.embedded.ports import reserve_port; print(reserve_port()); sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", script], stdin=PIPE, stdout=PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        theirs = int(child.stdout.readline())
        scan_from(monkeypatch, theirs)
        assert reserve_port() != theirs
        child.stdin.close()
        child.wait(timeout=10)
    assert reserve_port() == theirs


def test_a_port_something_listens_on_is_skipped_and_so_is_a_pair_whose_second_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held = listener.getsockname()[1]
        scan_from(monkeypatch, held)
        assert reserve_port() != held
        scan_from(monkeypatch, held - 1)
        assert reserve_port(pair=True) not in (held - 1, held)
