"""Where the local stack's broker listens: the default of every ``bootstrap_servers`` setting.

``LOCKGATE_BOOTSTRAP_SERVERS`` names a cluster; when it is unset every component (SDK,
processor, sink, CLI) talks to the local stack's broker, ``127.0.0.1:$LOCKGATE_KAFKA_PORT``
— the same port ``lockgate up`` gives the broker, so one variable moves the whole stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_KAFKA_PORT", "LOCAL_HOST", "local_bootstrap"]

LOCAL_HOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092


def local_bootstrap(validated: Mapping[str, Any]) -> str:
    """``default_factory`` of a settings' ``bootstrap_servers``, from its validated ``kafka_port``.

    Declare ``kafka_port`` before ``bootstrap_servers`` (pydantic validates fields in order).
    """
    return f"{LOCAL_HOST}:{validated.get('kafka_port', DEFAULT_KAFKA_PORT)}"
