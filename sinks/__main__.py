"""``python -m sinks``: run the sink process (what ``lockgate up`` starts)."""

from sinks.service import main

if __name__ == "__main__":  # not when a derive worker (spawn) imports the main module
    raise SystemExit(main())
