"""The direct lane of POST /v1/calls (`shared/web/direct_route.py`): it answers what it serves exactly as the
documented route would, and hands every other request to that route with its body intact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Message, Scope

from services.dispatcher.api import CallCreatedView, create_call_direct
from services.dispatcher.app import create_app
from services.dispatcher.settings import DispatcherSettings
from shared.web.direct_route import DirectRoute
from tests.unit.fakes import FakeDispatchStore
from tests.unit.test_dispatch_service import CENTRE, T0, Clock, ping, registry, started

TOKENS = "dispatcher:d-token,viewer:v-token,admin:a-token"
CALL = {"call_id": "C-1", "lat": CENTRE[0], "lon": CENTRE[1], "category": "theft", "priority": 1}
JSON = {"content-type": "application/json"}


def request(body: object, *, token: str | None = "d-token", **headers: str) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = {} if token is None else {"authorization": f"Bearer {token}"}
    return raw, {**JSON, **auth, **headers}


REQUESTS = {
    "a new call": request(CALL),
    "the same call_id again": request(CALL),
    "auto-assigned": request({**CALL, "call_id": "C-2", "auto_assign": True, "address": "东风路 1 号"}),
    "admin's token": request({**CALL, "call_id": "C-3"}, token="a-token"),
    "the scheme in lower case": request({**CALL, "call_id": "C-4"}, authorization="bearer d-token"),
    "no token": request({**CALL, "call_id": "C-5"}, token=None),
    "an unknown token": request({**CALL, "call_id": "C-5"}, token="guess"),
    "a viewer's token": request({**CALL, "call_id": "C-5"}, token="v-token"),
    "another scheme": request({**CALL, "call_id": "C-5"}, authorization="Basic d-token"),
    "JSON that does not parse": request(b'{"lat": 27.2,'),
    "NaN, which Python's JSON reads": request(b'{"lat": NaN, "lon": 111.47, "category": "x", "priority": 1}'),
    "a priority out of range": request({**CALL, "call_id": "C-5", "priority": 7}),
    "an unknown field": request({**CALL, "call_id": "C-5", "colour": "red"}),
    "an empty body": request(b""),
    "JSON sent as text": request({**CALL, "call_id": "C-6"}, **{"content-type": "text/plain"}),
    "a charset": request({**CALL, "call_id": "C-7"}, **{"content-type": "application/json; charset=utf-8"}),
}
SERVED = {"a new call", "the same call_id again", "auto-assigned", "admin's token", "the scheme in lower case"}
"""The requests the lane answers itself; it hands on every other one."""


async def dispatcher_app(*, lane: bool, store: FakeDispatchStore | None = None) -> tuple[FastAPI, list[bool]]:
    """The dispatcher's app over in-memory fakes, with its direct lane or without; and, with it, whether the lane
    answered each request it saw."""
    store = store or FakeDispatchStore()
    await store.import_registry(registry())
    clock = Clock()
    service = await started(store, clock)
    for unit_id, metres in (("U1", 100), ("U2", 1_000)):
        await service.on_position(ping(unit_id, CENTRE[0] + metres / 111_195, CENTRE[1], T0 - timedelta(seconds=5)))
    app = create_app(DispatcherSettings(api_tokens=TOKENS))
    app.state.service = service
    lane_answered: list[bool] = []

    async def recording(scope: Scope, body: bytes) -> Response | None:
        try:
            response = await create_call_direct(scope, body)
        except Exception:
            lane_answered.append(True)  # the app's error table answers for it
            raise
        lane_answered.append(response is not None)
        return response

    assert isinstance(app.router.routes[0], DirectRoute), "create_app puts the lane first"
    if lane:
        app.router.routes[0] = DirectRoute(app, "POST", "/v1/calls", recording)
    else:
        del app.router.routes[0]
    return app, lane_answered


async def answers(
    app: FastAPI, requests: dict[str, tuple[bytes, dict[str, str]]] = REQUESTS
) -> dict[str, tuple[int, dict[str, str], bytes]]:
    got = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dispatcher") as client:
        for name, (body, headers) in requests.items():
            answer = await client.post("/v1/calls", content=body, headers=headers)
            got[name] = (answer.status_code, dict(answer.headers), answer.content)
    return got


async def test_the_lane_answers_every_request_as_the_documented_route_does() -> None:
    with_lane, lane_answered = await dispatcher_app(lane=True)
    without_lane, _ = await dispatcher_app(lane=False)
    served, documented = await answers(with_lane), await answers(without_lane)
    assert served == documented
    assert [served[name][0] for name in REQUESTS] == [201, 200, 201, 201, 201, 401, 401, 403, 401, 422, 422, 422,
                                                      422, 422, 422, 201]  # fmt: skip
    assert lane_answered == [name in SERVED for name in REQUESTS]
    assert with_lane.url_path_for("create_call") == "/v1/calls", "url_for passes the lane by"


async def test_the_calls_answer_carries_exactly_the_documented_view() -> None:
    """The route writes its answer as a dict with orjson, for speed: it must have `CallCreatedView`'s fields, no
    more and no fewer, in their documented types (schemathesis would not notice an extra field)."""
    app, _ = await dispatcher_app(lane=True)
    created = [content for status, _, content in (await answers(app)).values() if status in (200, 201)]
    assert len(created) == 6
    for content in created:
        body = orjson.loads(content)
        assert list(body) == list(CallCreatedView.model_fields)
        assert CallCreatedView.model_validate(body).model_dump(mode="json") == body


async def test_an_error_in_the_lane_is_answered_by_the_app_s_error_table() -> None:
    down = {"PostgreSQL down": request(CALL)}
    outcomes = []
    for lane in (True, False):
        store = FakeDispatchStore()
        app, lane_answered = await dispatcher_app(lane=lane, store=store)
        store.down = True
        outcomes.append((await answers(app, down), lane_answered))
    (served, lane_answered), (documented, _) = outcomes
    assert served == documented
    status, headers, _ = served["PostgreSQL down"]
    assert (status, headers["retry-after"]) == (503, "1")
    assert lane_answered == [True]


async def test_a_request_handed_on_reaches_the_documented_route_with_its_whole_body() -> None:
    app = FastAPI()
    seen: list[bytes] = []

    @app.post("/echo")
    async def documented(body: dict[str, int]) -> dict[str, str]:
        seen.append(orjson.dumps(body))
        return {"by": "documented"}

    async def serve(scope: Scope, body: bytes) -> Response | None:
        return Response(b'{"by":"lane"}', media_type="application/json") if body == b'{"n":1}' else None

    app.router.routes.insert(0, DirectRoute(app, "POST", "/echo", serve))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        assert (await client.post("/echo", content=b'{"n":1}', headers=JSON)).json() == {"by": "lane"}

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"n":'
            yield b"2}"

        assert (await client.post("/echo", content=chunks(), headers=JSON)).json() == {"by": "documented"}
        assert (await client.get("/echo")).status_code == 405, "other methods go to the app's own routes"
    assert seen == [b'{"n":2}']


async def test_a_client_gone_before_its_body_arrived_gets_no_answer_and_the_lane_no_call() -> None:
    app = FastAPI()
    served: list[bytes] = []

    @app.post("/echo")
    async def documented() -> None: ...

    async def serve(scope: Scope, body: bytes) -> Response | None:
        served.append(body)
        return None

    route = DirectRoute(app, "POST", "/echo", serve)
    messages: list[Message] = [{"type": "http.disconnect"}, {"type": "http.request", "body": b"{", "more_body": True}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop()

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b""}
    await route.handle(scope, receive, send)
    assert (served, sent) == ([], [])


def test_the_lane_needs_a_documented_route_for_its_path() -> None:
    with pytest.raises(ValueError, match="no route of the app serves POST /missing"):
        DirectRoute(FastAPI(), "POST", "/missing", create_call_direct)
