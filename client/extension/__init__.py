"""The Vane browser extension (Manifest V3), shipped as static files inside this package.

The files beside this module are the unpacked extension: ``manifest.json``, the service worker
``background.js`` (each completed visit becomes an event on the local API, queued in
``chrome.storage.local`` while the server is down and retried with backoff), ``popup.html`` (the top
interests), ``options.html`` (port, token, excluded sites) and ``config.js`` shared by all three.
:func:`write_extension` copies them to a folder to load with "Load unpacked" in
``chrome://extensions``; ``defaults.json`` there holds the server port.

``manifest.json`` carries a fixed public key (``"key"``), so the extension has the same ID wherever it
is loaded: :data:`EXTENSION_ID`, derived from that key as Chromium does (the SHA-256 of the DER
SubjectPublicKeyInfo, its first 32 hex digits mapped ``0-f`` to ``a-p``). The private key was never
kept: the extension is loaded unpacked, never packed or published. :data:`EXTENSION_ORIGIN` is the
origin its requests carry, which ``vane client serve`` accepts by default.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from vane.shared.errors import ConfigError

DEFAULT_PORT = 8741
#: The files of the unpacked extension (everything else in this package is Python).
FILES: tuple[str, ...] = (
    "manifest.json", "background.js", "config.js", "popup.html", "popup.js", "options.html", "options.js",
    "ext.css",
)


def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def manifest() -> dict[str, Any]:
    """The shipped ``manifest.json``."""
    data: dict[str, Any] = json.loads(_read("manifest.json"))
    return data


def extension_id(public_key_b64: str) -> str:
    """The Chromium extension ID of a manifest ``"key"`` (base64 of the DER SubjectPublicKeyInfo)."""
    try:
        der = base64.b64decode(public_key_b64, validate=True)
    except ValueError as exc:
        raise ConfigError(f"manifest key {public_key_b64[:20]!r}... is not valid base64: {exc}") from exc
    digest = hashlib.sha256(der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


EXTENSION_ID: str = extension_id(manifest()["key"])
EXTENSION_ORIGIN: str = f"chrome-extension://{EXTENSION_ID}"


def write_extension(out_dir: str | os.PathLike[str], port: int = DEFAULT_PORT) -> Path:
    """Write the unpacked extension into ``out_dir`` (created if missing), talking to ``127.0.0.1:port``.

    A folder that already holds files is refused unless it is a Vane extension written before (its
    ``manifest.json`` has the same key), which is then updated in place. Returns the folder.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port {port!r} is not valid: expected a whole number from 1 to 65535")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {str(out)!r} is a file: expected a folder for the unpacked extension")
    if out.is_dir() and any(out.iterdir()):
        old = out / "manifest.json"
        try:
            same = json.loads(old.read_text(encoding="utf-8")).get("key") == manifest()["key"]
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            raise ConfigError(f"output folder {str(out)!r} is not empty and holds no Vane extension: "
                              "expected a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / name).write_bytes(_read(name))
    (out / "defaults.json").write_text(json.dumps({"port": port}) + "\n", encoding="utf-8")
    return out


__all__ = ["DEFAULT_PORT", "EXTENSION_ID", "EXTENSION_ORIGIN", "FILES", "extension_id", "manifest",
           "write_extension"]
