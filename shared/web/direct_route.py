"""A direct lane for one hot route: the requests it can answer exactly as the documented route would are served
without FastAPI's per-request machinery; every other request goes to the documented route.

FastAPI 0.165 rebuilds a `Request`, parses the content type with the `email` package, solves every dependency and
wraps the endpoint in three layers on each request: a fifth of the dispatcher's CPU at 400 calls/s on the hottest
route (README, "The calls path, session 18"). The lane sits first among the app's routes, inside the app's
middleware and exception handlers, so admission control, the body limit and the one error table apply to it as to
any route. Its `serve` answers only requests it has fully checked (a token of an admitted role, a JSON body that
validates) and returns None for any other; that request, its body replayed, is then handled by the documented route,
so every refusal (401, 403, 422) is the documented route's own, byte for byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Message, Receive, Scope, Send

Serve = Callable[[Scope, bytes], Awaitable[Response | None]]
"""The lane's handler: the request's scope and whole body; a response, or None to leave it to the documented route."""


class DirectRoute(BaseRoute):
    def __init__(self, app: FastAPI, method: str, path: str, serve: Serve) -> None:
        self.method, self.path_format, self._serve = method, path, serve
        self._router = app.router
        probe: Scope = {"type": "http", "method": method, "path": path, "root_path": "", "path_params": {}}
        if not any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            raise ValueError(f"no route of the app serves {method} {path}: the direct lane needs one to document it")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (scope["type"] == "http" and scope["method"] == self.method and scope["path"] == self.path_format
                and _DECLINED not in scope):  # fmt: skip
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """The lane has no name of its own: `url_for` finds the documented route."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _whole_body(receive)
        if body is None:
            return  # the client left before its body arrived: there is no one to answer
        response = await self._serve(scope, body)
        if response is not None:
            await response(scope, receive, send)
            return
        # Routed again, past this lane: the documented route gets the request as if the lane were not there.
        scope[_DECLINED] = True
        await self._router(scope, _replaying(body, receive), send)


_DECLINED = "kuaijing.direct_route.declined"
"""Set in the scope of a request the lane has handed on."""


async def _whole_body(receive: Receive) -> bytes | None:
    """The request's body, None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message, then the connection's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
