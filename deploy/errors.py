"""Errors of the local stack (broker, processes, topics)."""

from __future__ import annotations

from lockgate.kernel.errors import LockgateError

__all__ = [
    "BrokerUnavailable",
    "ClusterLayoutMismatch",
    "JarResolutionFailed",
    "PortInUse",
    "ProcessFailed",
    "StackError",
]


class StackError(LockgateError):
    """The local stack could not be brought up, down, or inspected."""


class PortInUse(StackError):
    """A port the stack needs is held by another process."""

    def __init__(self, port: int, holder: str) -> None:
        self.port = port
        self.holder = holder
        super().__init__(
            f"port {port} is already in use by {holder}; stop that process or choose "
            f"other ports (LOCKGATE_KAFKA_PORT / LOCKGATE_CONTROLLER_PORT / LOCKGATE_API_PORT)"
        )


class JarResolutionFailed(StackError):
    """Maven could not resolve the broker's jars."""


class BrokerUnavailable(StackError):
    """The broker did not answer a metadata request in time."""


class ProcessFailed(StackError):
    """A stack process exited during start-up."""


class ClusterLayoutMismatch(StackError):
    """``--brokers N`` asks for another cluster size than the one formatted under this home."""
