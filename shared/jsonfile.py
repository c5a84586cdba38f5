"""Reading and writing the small JSON files of the contract (specs, taxonomies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vane.shared.errors import VaneError


def read_json(path: str | Path, what: str, error: type[VaneError]) -> Any:
    """Parse ``path``; a missing or unreadable file raises ``error`` naming ``what`` and the path."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} file {str(path)!r} is not readable JSON: {exc}") from None


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically (a temporary file, then a rename)."""
    write_bytes_atomic(path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename); the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
