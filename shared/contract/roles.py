"""Who may do what (contract section 7): API tokens map to roles. Plain Python, so settings and the CLI can read
tokens without loading the web framework that enforces them (`shared/web/auth.py`)."""

from __future__ import annotations

import secrets
from enum import StrEnum

from shared.errors import ConfigurationError


class Role(StrEnum):
    TERMINAL = "terminal"
    DISPATCHER = "dispatcher"
    VIEWER = "viewer"
    ADMIN = "admin"


def parse_api_tokens(spec: str) -> dict[str, Role]:
    """Parse `role:token,role:token`; a token names exactly one role."""
    tokens: dict[str, Role] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        role_name, sep, token = entry.partition(":")
        if not sep or not token:
            raise ConfigurationError(f"KUAIJING_API_TOKENS entry {entry!r} is not role:token")
        try:
            role = Role(role_name.strip())
        except ValueError as e:
            known = ", ".join(r.value for r in Role)
            raise ConfigurationError(f"KUAIJING_API_TOKENS: unknown role {role_name!r} (known: {known})") from e
        tokens[token.strip()] = role
    return tokens


def generate_api_tokens() -> str:
    """One fresh token per role, in the `KUAIJING_API_TOKENS` format."""
    return ",".join(f"{role.value}:{secrets.token_urlsafe(18)}" for role in Role)


def role_of(tokens: dict[str, Role], presented: str) -> Role | None:
    """The role of a presented token, compared with every configured token in constant time, so response timing
    does not reveal how much of a guess was right."""
    guess = presented.encode()
    role = None
    for token, candidate in tokens.items():
        if secrets.compare_digest(token.encode(), guess):
            role = candidate
    return role
