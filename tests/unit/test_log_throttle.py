"""A broker outage's retry storm from aiokafka is held to a few lines per message per window, with a count of what
was held back; the services' own lines are never held."""

from __future__ import annotations

import logging

from shared.web.log_throttle import Throttle


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_storm_passes_a_burst_per_window_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    throttle = Throttle(("aiokafka",), burst=3, window_s=10, clock=lambda: now[0])
    storm = [record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused") for _ in range(100)]
    assert [throttle.filter(r) for r in storm[:5]] == [True, True, True, False, False]
    assert sum(throttle.filter(r) for r in storm[5:]) == 0
    now[0] = 10.0
    again = record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
    assert throttle.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1: refused [97 similar messages held back]"


def test_other_templates_and_other_loggers_pass() -> None:
    throttle = Throttle(("aiokafka",), burst=1, window_s=10, clock=lambda: 0.0)
    assert throttle.filter(record("aiokafka.consumer", "one"))
    assert throttle.filter(record("aiokafka.consumer", "another"))
    assert not throttle.filter(record("aiokafka.consumer", "one"))
    assert all(throttle.filter(record("services.ingest", "one")) for _ in range(50)), "our own lines are never held"
