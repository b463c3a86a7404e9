"""Admission control: a service offered more than it can serve keeps its latency bounded instead of queueing
without limit. At most `limit` requests are in the handlers at once; a request that finds no free slot within
`wait_s` is answered 503 with `Retry-After` at once and counted, so clients back off and a dispatcher's console
hears "busy" in a second rather than an answer after a minute.

Probes, metrics and the live event stream (one long-lived request per console) are never held back."""

from __future__ import annotations

import asyncio
import math

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/events"})


class AdmissionControl:
    def __init__(
        self, app: ASGIApp, *, limit: int, wait_s: float, registry: CollectorRegistry, exempt: frozenset[str]
    ) -> None:
        self._app = app
        self._slots = asyncio.Semaphore(limit)
        self._wait_s = wait_s
        self._exempt = exempt
        self._retry_after = str(max(1, math.ceil(wait_s)))
        self.refused = Counter(
            "kuaijing_http_refused_total",
            "Requests answered 503 because the service was at capacity",
            registry=registry,
        )
        self.in_flight = Gauge("kuaijing_http_in_flight", "Requests in the handlers now", registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self._app(scope, receive, send)
            return
        if self._slots.locked():  # wait_for costs a task a request: only pay it when there is a wait
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait_s)
            except TimeoutError:
                self.refused.inc()
                await _busy(send, self._retry_after)
                return
        else:
            await self._slots.acquire()
        self.in_flight.inc()
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight.dec()
            self._slots.release()


async def _busy(send: Send, retry_after: str) -> None:
    body = orjson.dumps({"detail": {"field": None, "error": "the service is at capacity; retry"}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after.encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
