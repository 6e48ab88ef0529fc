"""``python -m sinks``: run the sink process (what ``lockgate up`` starts)."""

from sinks.service import main

raise SystemExit(main())
