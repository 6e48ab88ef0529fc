"""``python -m processors.worker``: run one processor worker (what ``lockgate up`` starts).

The process is a small supervisor (:mod:`processors.supervisor`) that keeps the Faust worker
running as its child and restarts it from committed state when it exits on its own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from lockgate.kernel.errors import LockgateError
from processors.app import build_app
from processors.consumer_health import install_consumer_health
from processors.settings import ProcessorSettings
from processors.supervisor import CHILD_ENV, supervise


def _prepare_internal_topics(app: Any, settings: ProcessorSettings) -> None:
    """Create the app's changelog and assignor topics before Faust joins its group."""
    from lockgate.kernel.topic_admin import create_if_missing

    wanted: dict[str, tuple[int, dict[str, str]]] = {
        f"{app.conf.id}-__assignor-__leader": (1, {}),
    }
    for table in app.tables.values():
        wanted[table.changelog_topic.get_topic_name()] = (table.partitions, {"cleanup.policy": "compact"})
    create_if_missing(settings.bootstrap_servers, wanted)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    if not os.environ.get(CHILD_ENV):
        return supervise([sys.executable, "-m", "processors.worker"])
    settings = ProcessorSettings()
    try:
        app = build_app(settings)
        install_consumer_health(app, settings)
        _prepare_internal_topics(app, settings)
    except LockgateError as exc:
        print(f"lockgate processor: {exc}", file=sys.stderr)
        return 2
    # Faust's CLI reads sys.argv; the worker is configured entirely by ProcessorSettings.
    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    app.main()  # runs until SIGTERM and exits the process itself


if __name__ == "__main__":
    raise SystemExit(main())
