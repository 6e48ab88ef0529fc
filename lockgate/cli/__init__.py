"""The ``lockgate`` command: the only place that wires the rooms together.

Nothing below imports this package (import-linter contracts in ``pyproject.toml``). Each
command lives in a module of its own (``stack``, ``keys``, ``policy``, ``submit``,
``audit``, ``verify``) listed in :mod:`lockgate.cli.commands`; the demo, sink locating and
ledger-source selection sit here too, because they join components.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lockgate`` command line; returns the exit status."""
    from lockgate.cli.main import main as run

    return run(argv)
