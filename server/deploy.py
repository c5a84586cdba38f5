"""Commands and files for a Flower deployment (SuperLink + SuperNodes) with TLS and node auth.

The pieces, on one machine (``vane server certs DIR`` makes the keys)::

    flower-superlink --ssl-ca-certfile DIR/ca.crt --ssl-certfile DIR/server.crt \\
        --ssl-keyfile DIR/server.key --enable-supernode-auth --database state.db \\
        --host 127.0.0.1 --port 9093 \\
        --disable-runtime-dependency-installation
    # $FLWR_HOME/config.toml:  [superlink] default = "vane"
    #                          [superlink.vane] address = "127.0.0.1:9093"  root-certificates = "DIR/ca.crt"
    flwr supernode register DIR/supernode-1.pub vane
    flower-supernode --superlink 127.0.0.1:9093 --root-certificates DIR/ca.crt \\
        --auth-supernode-private-key DIR/supernode-1 --port 9094 \\
        --node-config 'store="/path/user.store" key-file="/path/user.key"'
    flwr run APP_DIR vane --run-config 'num-server-rounds=3 out-dir="/srv/vane-run"'
    flwr ls vane --format json     # `flwr run` exits 0 even when the run fails

:func:`write_app_dir` writes a minimal Flower app (``APP_DIR/pyproject.toml``)
naming ``vane.server.app:app`` and ``vane.client.app:app``, with every
run_config key declared so ``--run-config`` can override it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vane.server.config import PrivacySettings, SecAggSettings, ServerSettings
from vane.shared.errors import ConfigError
from vane.shared.protocol import NODE_KEY_FILE_KEY, NODE_STORE_KEY, to_config


def flower_executable(name: str) -> str:
    """The Flower CLI next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed; install vane[server] (flwr>=1.42)")
    return found


def deployment_env(flwr_home: str | Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the Flower processes: this venv's ``bin`` first on PATH (the SuperLink and
    SuperNode spawn ``flower-superexec``, ``flwr-serverapp`` and ``flwr-clientapp`` by name)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def superlink_command(
    certs_dir: str | Path,
    port: int,
    database: str | Path,
    host: str = "127.0.0.1",
) -> list[str]:
    """``flower-superlink`` with TLS from ``certs_dir`` and SuperNode authentication on."""
    certs = Path(certs_dir)
    return [
        flower_executable("flower-superlink"),
        "--ssl-ca-certfile", str(certs / "ca.crt"),
        "--ssl-certfile", str(certs / "server.crt"),
        "--ssl-keyfile", str(certs / "server.key"),
        "--enable-supernode-auth",
        "--database", str(database),
        "--host", host,
        "--port", str(port),
        "--disable-runtime-dependency-installation",
    ]


def node_config_arg(values: Mapping[str, Any]) -> str:
    """``--node-config`` text: ``key="string" key=number key=true``."""
    return " ".join(f"{key}={_toml_value(value)}" for key, value in values.items())


def supernode_command(
    superlink: str,
    ca_cert: str | Path,
    private_key: str | Path,
    store: str | Path,
    key_file: str | Path,
    port: int,
    host: str = "127.0.0.1",
    max_retries: int | None = None,
    node_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """``flower-supernode`` authenticated with ``private_key``, training on one encrypted store;
    ``node_config`` adds entries to its node_config (read by the ClientApp and its mods)."""
    cmd = [
        flower_executable("flower-supernode"),
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--auth-supernode-private-key", str(private_key),
        "--host", host,
        "--port", str(port),
        "--node-config",
        node_config_arg({NODE_STORE_KEY: str(store), NODE_KEY_FILE_KEY: str(key_file), **dict(node_config or {})}),
    ]
    if max_retries is not None:
        cmd += ["--max-retries", str(max_retries)]
    return cmd


def write_flower_config(flwr_home: str | Path, name: str, address: str, ca_cert: str | Path) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one default SuperLink connection called ``name``."""
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "{address}"\nroot-certificates = "{Path(ca_cert).resolve()}"\n',
        encoding="utf-8",
    )
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def run_config_defaults() -> dict[str, Any]:
    """Every run_config key the ServerApp reads (server, SecAgg+ and DP settings) with its default."""
    config: dict[str, Any] = {}
    for settings in (ServerSettings(), SecAggSettings(), PrivacySettings()):
        config.update(to_config(settings))
    return config


def _app_taxonomy(run_config: Mapping[str, Any]) -> dict[str, str]:
    """A deployment trains for the Topics taxonomy (the browsing default) unless told otherwise, named by its hash."""
    from vane.shared.vocabularies import DEFAULT_BROWSING, resolve_taxonomy

    source = str(run_config.get("taxonomy-file") or DEFAULT_BROWSING)
    return {"taxonomy-file": source, "taxonomy-version": resolve_taxonomy(source).version}


def write_app_dir(
    directory: str | Path,
    run_config: Mapping[str, Any] | None = None,
    clientapp: str = "vane.client.app:app",
) -> Path:
    """A minimal Flower app for ``flwr run``: components and every run_config key with its default.

    ``flwr run --run-config`` refuses keys the app does not declare, so all of
    :func:`run_config_defaults` are declared; ``run_config`` overrides them and
    may add keys. The taxonomy is ``builtin:topics`` (not the synthetic one) unless
    ``taxonomy-file`` says otherwise, and ``taxonomy-version`` names it by content hash.
    ``clientapp`` is the ClientApp's ``module:attribute``; a
    module placed in ``directory`` ships in the FAB and is importable by the
    SuperNodes.
    """
    config = {**run_config_defaults(), **_app_taxonomy(run_config or {}), **dict(run_config or {})}
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        'name = "vane-federation"',
        'version = "0.1.0"',
        'description = "Vane federated training (components live in the installed vane package)"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "vane"',
        "",
        "[tool.flwr.app.components]",
        'serverapp = "vane.server.app:app"',
        f"clientapp = {json.dumps(clientapp)}",
        "",
        "[tool.flwr.app.config]",
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.items()]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
