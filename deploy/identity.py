"""Keys the local stack provisions for itself on ``lockgate up``.

The processor's verdict-signing key (``keys/processor.pem``) and the ``cli`` service
identity (``keys/services/cli.pem``, registered in ``keys/services.json``) so that
``lockgate submit`` and the demo work out of the box. Existing keys are never replaced.
"""

from __future__ import annotations

from pathlib import Path

from lockgate.kernel.home import Home
from trust.keys import SigningKey
from trust.registry import ServiceRegistry

__all__ = ["CLI_SERVICE", "ensure_cli_identity", "ensure_processor_key", "processor_key_path"]

CLI_SERVICE = "cli"


def processor_key_path(home: Path) -> Path:
    return Home(home).processor_key


def ensure_processor_key(home: Path) -> tuple[SigningKey, bool]:
    """Load the processor key, creating it (0600) when missing. Returns (key, created)."""
    path = processor_key_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if path.exists():
        return SigningKey.load(path), False
    key = SigningKey.generate()
    key.save(path)
    return key, True


def ensure_service(home: Path, name: str) -> bool:
    """Register ``name`` with a fresh key unless it is registered. Returns True if created."""
    registry = ServiceRegistry(Home(home).keys)
    if name in registry.services():
        return False
    registry.add_service(name)
    return True


def ensure_cli_identity(home: Path) -> bool:
    return ensure_service(home, CLI_SERVICE)
