"""``python -m jkoflow.contrib.molecules`` entry point (see :mod:`.cli`)."""

from .cli import main

raise SystemExit(main())
