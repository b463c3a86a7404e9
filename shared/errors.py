"""The one tree of every error Kuaijing raises on purpose.

Each error carries a stable, machine-readable `code` and, when one input is at fault, its `field`. The edges
translate them once: `shared/web/errors.py` to HTTP statuses, `shared/contract/deadletter.py` to dead-letter
reasons. Adapters translate the third-party errors they meet (aiokafka, asyncpg) into these with `raise ... from`.
"""

from __future__ import annotations

from typing import ClassVar

from shared.contract.schemas import RejectReason


class KuaijingError(Exception):
    """Base of the project's own exceptions; `str()` reads `field: error` when there is a field."""

    code: ClassVar[str] = "error"

    def __init__(self, error: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {error}" if field else error)
        self.error = error
        self.field = field


class ConfigurationError(KuaijingError):
    """A setting cannot work (bad token list, missing binary, port taken)."""

    code = "configuration"


class InfrastructureError(KuaijingError):
    """Kafka or PostgreSQL could not be started, reached or prepared."""

    code = "infrastructure"


class UnavailableError(InfrastructureError):
    """A dependency did not confirm in time (Kafka did not acknowledge): nothing may be assumed done; retry."""

    code = "unavailable"


class NotFoundError(KuaijingError):
    code = "not_found"


class ConflictError(KuaijingError):
    """The request contradicts the current state (a busy unit, a closed call, a terminal on another unit)."""

    code = "conflict"


class InvalidError(KuaijingError):
    """The request is not meaningful whatever the state (dispatched without a call, a self-crossing zone)."""

    code = "invalid"


class TooLargeError(KuaijingError):
    code = "too_large"


class UnreadableError(KuaijingError):
    """The body is not JSON at all, so not even its items can be judged."""

    code = "unreadable"


class RejectedError(KuaijingError):
    """Input refused with a dead-letter reason: the telemetry paths publish it to `kuaijing.deadletter`."""

    code = "rejected"

    def __init__(self, reason: RejectReason, error: str, *, field: str | None = None) -> None:
        super().__init__(error, field=field)
        self.reason = reason
