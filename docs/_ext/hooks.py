"""MkDocs hooks of the documentation build (mkdocs.yml ``hooks``).

``.venv/bin/mkdocs`` puts its own directory first on ``sys.path``; that directory also holds the
``jkoflow`` console script, which griffe would then take for the ``jkoflow`` package. The
package itself lives in ``core/``, and griffe finds it by importing ``jkoflow`` (the editable
install maps the name to ``core/``). Drop such directories from the module search path before
mkdocstrings collects anything.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def on_startup(**kwargs: Any) -> None:
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "jkoflow").is_file()]
