"""``python -m jkoflow``: the same command line as ``jkoflow``."""

from .cli import main

raise SystemExit(main())
