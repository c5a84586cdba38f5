"""``vane client extension --out DIR``: write the browser extension out, to load it unpacked.

The extension (:mod:`vane.client.extension`) sends each page visit to ``vane client serve`` on
127.0.0.1 and shows the top interests in its popup. Load the folder in Chromium or Chrome with
``chrome://extensions`` → Developer mode → Load unpacked, then set the token on its options page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from vane.client.extension import DEFAULT_PORT, EXTENSION_ID, EXTENSION_ORIGIN, write_extension

out = Console()


def extension_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the unpacked extension into (new or empty).",
                                          file_okay=False)],
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port of `vane client serve` the extension talks to.")] = DEFAULT_PORT,
) -> None:
    """Write the Vane browser extension (Manifest V3) into a folder, for "Load unpacked"."""
    folder = write_extension(out_dir, port=port)
    out.print(f"Wrote the Vane extension to {folder} (ID {EXTENSION_ID}, origin {EXTENSION_ORIGIN}).", markup=False,
              highlight=False)
    out.print("Load it: chrome://extensions → Developer mode → Load unpacked → choose that folder; "
              "then paste the output of `vane client token --store STORE` on its options page.", markup=False,
              highlight=False)
