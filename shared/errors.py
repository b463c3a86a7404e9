"""The root of every error Kuaijing raises on purpose; boundaries map these to status codes or dead letters."""


class KuaijingError(Exception):
    """Base of the project's own exceptions."""


class ConfigurationError(KuaijingError):
    """A setting cannot work (bad token list, missing binary, port taken)."""


class InfrastructureError(KuaijingError):
    """Kafka or PostgreSQL could not be started, reached or prepared."""
