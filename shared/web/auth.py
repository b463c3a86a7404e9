"""Bearer-token auth of contract section 7 over FastAPI: routes name the roles they admit
(`shared/contract/roles.py`)."""

from __future__ import annotations

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from shared.contract.roles import Role, role_of


class RoleBearer(HTTPBearer):
    """A bearer token admitting some roles and admin: 401 for no or unknown token, 403 for others.

    One dependency that is also the OpenAPI security scheme (`HTTPBearer`), rather than a role check depending on
    FastAPI's bearer reader: FastAPI solves every dependency anew on each request, and the second one was a tenth of
    the HTTP layer's time on the hottest route (README, "The calls path, session 17")."""

    def __init__(self, admitted: frozenset[Role], *, query_token: bool) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")
        self._admitted = admitted
        self._needed = ", ".join(sorted(r.value for r in admitted))
        self._query_token = query_token

    async def __call__(self, request: Request) -> Role:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is not None:
            presented: str | None = credentials.credentials
        elif self._query_token:
            presented = request.query_params.get("token")
        else:
            presented = None
        if presented is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"field": "Authorization", "error": "missing bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        tokens: dict[str, Role] = request.app.state.settings.tokens
        role = role_of(tokens, presented)
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"field": "Authorization", "error": "unknown token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in self._admitted:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail={"field": "Authorization", "error": f"role {role.value} may not do this (needs {self._needed})"},
            )
        return role

    def admits(self, authorization: str | None, tokens: dict[str, Role]) -> bool:
        """True when an `Authorization` header carries a known token of an admitted role: the requests `__call__`
        lets through by their header, told without a `Request` (the direct lane, `shared/web/direct_route.py`)."""
        scheme, credentials = get_authorization_scheme_param(authorization)
        return scheme.lower() == "bearer" and bool(credentials) and role_of(tokens, credentials) in self._admitted


def require_role(*allowed: Role, query_token: bool = False) -> RoleBearer:
    """A FastAPI dependency admitting `allowed` roles and admin.

    `query_token` also accepts `?token=` for pages a browser opens directly (a wall screen cannot send headers).
    """
    return RoleBearer(frozenset((*allowed, Role.ADMIN)), query_token=query_token)
