"""The options every ``vane client …`` command shares (:mod:`vane.client.cli_client`, :mod:`vane.client.cli_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[Path, typer.Option("--store", help="The encrypted store file.", dir_okay=False)]
KeyOpt = Annotated[Path | None, typer.Option("--key-file", help="Key file (default: STORE.key).", dir_okay=False)]
PassOpt = Annotated[
    str | None, typer.Option("--passphrase-env", help="Name of an environment variable holding the passphrase.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
