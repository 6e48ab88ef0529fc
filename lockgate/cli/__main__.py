"""``python -m lockgate.cli``: the same as the ``lockgate`` console script."""

from lockgate.cli.main import main

raise SystemExit(main())
