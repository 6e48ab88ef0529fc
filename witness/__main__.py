"""``python -m witness``: run a witness configured from ``LOCKGATE_*`` (what ``lockgate up`` starts)."""

from __future__ import annotations

import sys

from witness.service import main

if __name__ == "__main__":
    sys.exit(main())
