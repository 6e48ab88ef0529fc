"""``python -m processors.worker``: run one processor worker (what ``lockgate up`` starts)."""

from __future__ import annotations

import logging
import sys

from processors.app import build_app
from processors.settings import ProcessorSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    settings = ProcessorSettings()
    app = build_app(settings)
    # Faust's CLI reads sys.argv; the worker is configured entirely by ProcessorSettings.
    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    app.main()


if __name__ == "__main__":
    main()
