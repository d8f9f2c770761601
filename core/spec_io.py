"""Reading and writing spec files (TOML)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .params import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load(path: str | Path) -> dict[str, Any]:
    """Read a TOML spec file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError("", f"spec file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SpecError("", f"spec file {str(path)!r} is a directory; expected a TOML file") from None
    except PermissionError:
        raise SpecError("", f"spec file {str(path)!r} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            "", f"{path} is not a text (UTF-8 TOML) file: {exc.reason} at byte {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("", f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError("", f"spec file {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def dump(spec: Mapping[str, Any], path: str | Path) -> None:
    """Write a (resolved) spec as TOML, atomically (see :mod:`jkoflow.files`)."""
    import tomli_w

    from .files import atomic_write_text

    atomic_write_text(path, tomli_w.dumps(_toml_ready(spec)))


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return value


__all__ = ["dump", "load"]
