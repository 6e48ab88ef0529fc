"""``python -m processors.worker``: run one processor worker (what ``lockgate up`` starts)."""

from __future__ import annotations

import logging
import sys

from lockgate.errors import LockgateError
from processors.app import build_app
from processors.settings import ProcessorSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        app = build_app(ProcessorSettings())
    except LockgateError as exc:
        print(f"lockgate processor: {exc}", file=sys.stderr)
        return 2
    # Faust's CLI reads sys.argv; the worker is configured entirely by ProcessorSettings.
    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    app.main()  # runs until SIGTERM and exits the process itself


if __name__ == "__main__":
    raise SystemExit(main())
