"""Bearer-token auth of contract section 7 over FastAPI: routes name the roles they admit
(`shared/contract/roles.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.contract.roles import Role, role_of

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_role(*allowed: Role, query_token: bool = False) -> Callable[[Request, Credentials], Awaitable[Role]]:
    """A FastAPI dependency admitting `allowed` roles and admin; 401 for no or unknown token, 403 for others.

    `query_token` also accepts `?token=` for pages a browser opens directly (a wall screen cannot send headers).
    """
    admitted = frozenset((*allowed, Role.ADMIN))

    async def dependency(request: Request, credentials: Credentials) -> Role:
        tokens: dict[str, Role] = request.app.state.settings.tokens
        if credentials is None and query_token and "token" in request.query_params:
            credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=request.query_params["token"])
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"field": "Authorization", "error": "missing bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        role = role_of(tokens, credentials.credentials)
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"field": "Authorization", "error": "unknown token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in admitted:
            needed = ", ".join(sorted(r.value for r in admitted))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail={
                    "field": "Authorization",
                    "error": f"role {role.value} may not do this (needs {needed})",
                },
            )
        return role

    return dependency
