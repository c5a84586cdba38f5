"""``vane server …``: model export, federated training and deployment.

TensorFlow and Flower are imported inside each command, never at module level.
"""

from __future__ import annotations

from pathlib import Path

import typer
from vane.server.cli_encoder import export_encoder_command

server_app = typer.Typer(no_args_is_help=True, help="Models, federated training and deployment.")
server_app.command("export-encoder")(export_encoder_command)


@server_app.command("export-model")
def export_model(
    out: str = typer.Argument(..., help="Where to write the model artifact (one file: model, spec, taxonomy)."),
    spec_path: str | None = typer.Option(None, "--spec", help="ModelSpec JSON file; by default the default spec "
                                         "sized to the taxonomy."),
    taxonomy_path: str = typer.Option("builtin:topics", "--taxonomy", help="Taxonomy JSON file, or "
                                      "builtin:topics (the Topics taxonomy, the browsing default) / "
                                      "builtin:browsing (the older coarse browsing categories) / builtin:synthetic."),
    weights_path: str | None = typer.Option(None, "--weights", help="Vane weights file to bake in."),
    version: str | None = typer.Option(None, "--version", help="Version label (default: spec hash.taxonomy hash)."),
    plain: bool = typer.Option(False, "--tflite", help="Write only the bare .tflite (the app then passes the "
                               "taxonomy itself)."),
    inference_only: bool = typer.Option(False, "--inference-only", help="Export only infer and step."),
    quantize: str | None = typer.Option(None, "--quantize", help="f16 or int8 (inference-only exports)."),
) -> None:
    """Export the interest model as one artifact a tracker opens with nothing else.

    The artifact (:mod:`vane.shared.artifact`) holds the LiteRT model (builtins only), its spec and
    its taxonomy: ``InterestTracker.open(store, key_file=..., model=OUT)``.
    """
    from vane.shared.artifact import ModelArtifact, model_identity
    from vane.shared.errors import ConfigError
    from vane.shared.spec import ModelSpec
    from vane.shared.vocabularies import describe_taxonomy, resolve_taxonomy
    from vane.shared.weights import Weights

    if quantize not in (None, "f16", "int8"):
        raise ConfigError(f"--quantize is {quantize!r}; expected f16 or int8")
    if quantize is not None and not inference_only:
        raise ConfigError("--quantize needs --inference-only: training exports stay float32")
    taxonomy = resolve_taxonomy(taxonomy_path)
    spec = ModelSpec.load(spec_path) if spec_path else ModelSpec(num_categories=len(taxonomy))
    if spec.num_categories != len(taxonomy):
        raise ConfigError(f"--spec has num_categories {spec.num_categories} but the taxonomy {taxonomy.version} "
                          f"has {len(taxonomy)} categories; expected them equal")
    weights = Weights.load(weights_path) if weights_path else None

    from vane.server.model import build_model, export_inference_model, export_training_model

    model = build_model(spec, weights)
    blob = export_inference_model(model, quantize=quantize) if inference_only else export_training_model(model)
    if plain:
        Path(out).write_bytes(blob)
    else:
        ModelArtifact(blob, spec, taxonomy, version or model_identity(spec, taxonomy)).save(out)
    kind = f"inference-only ({quantize or 'float32'})" if inference_only else "training"
    what = ".tflite" if plain else "model artifact"
    typer.echo(f"wrote {out}: {what}, {kind} model of spec {spec.hash}, taxonomy {describe_taxonomy(taxonomy)}, "
               f"{len(blob) / 1e6:.2f} MB")


@server_app.command("models")
def models_command(
    registry: str = typer.Option(..., "--registry", help="Model registry directory (OUT/registry of a run)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the published model versions of a registry."""
    import json

    from vane.server.registry import ModelRegistry, versions_as_json

    if not Path(registry).is_dir():
        raise typer.BadParameter(f"{registry!r} is not a directory; expected a model registry (OUT/registry of a run)",
                                 param_hint="--registry")
    versions = ModelRegistry(registry).versions()
    if as_json:
        typer.echo(json.dumps(versions_as_json(versions), indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model versions in {registry}")
    for column in ("id", "round", "spec hash", "taxonomy", "hr@5", "ndcg@10", "train loss", "created at", "path"):
        table.add_column(column)
    for v in versions:
        m = v.metrics
        table.add_row(
            v.id, str(v.round), v.spec_hash, v.taxonomy_version[:12],
            f"{m['hr@5']:.4f}" if "hr@5" in m else "-", f"{m['ndcg@10']:.4f}" if "ndcg@10" in m else "-",
            f"{m['train-loss']:.4f}" if "train-loss" in m else "-", v.created_at, v.path,
        )
    Console().print(table)


@server_app.command("certs")
def certs_command(
    directory: str = typer.Argument(..., help="Where to write ca.crt, server.crt/key and supernode-N keys."),
    host: list[str] = typer.Option(["localhost", "127.0.0.1"], "--host", help="SuperLink DNS name or IP (repeat)."),
    supernodes: int = typer.Option(2, "--supernodes", help="SuperNode key pairs to create."),
) -> None:
    """Create a CA, a SuperLink TLS certificate and SuperNode authentication keys."""
    from vane.server.certs import generate_deployment_keys

    if Path(directory).exists() and not Path(directory).is_dir():
        raise typer.BadParameter(f"{directory!r} is an existing file; expected a directory (created if missing)",
                                 param_hint="DIRECTORY")
    keys = generate_deployment_keys(directory, hosts=host, num_supernodes=supernodes)
    typer.echo(f"CA certificate:      {keys.ca_cert}")
    typer.echo(f"SuperLink cert/key:  {keys.server_cert} {keys.server_key}  (SAN: {', '.join(host)})")
    for private, public in zip(keys.supernode_keys, keys.supernode_public_keys):
        typer.echo(f"SuperNode key:       {private}  (register {public} with `flwr supernode register`)")


@server_app.command("superlink")
def superlink_command_cli(
    certs: str = typer.Option(..., "--certs", help="Directory made by `vane server certs`."),
    port: int = typer.Option(9093, "--port", help="HTTPS port of the Fleet, Control and Runtime APIs."),
    database: str = typer.Option("superlink.db", "--database", help="SuperLink state database."),
    host: str = typer.Option("127.0.0.1", "--host"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command instead of running it."),
) -> None:
    """Run flower-superlink with TLS and SuperNode authentication."""
    from vane.server.deploy import superlink_command

    _exec_or_print(superlink_command(certs, port, database, host=host), dry_run)


def _exec_or_print(cmd: list[str], dry_run: bool) -> None:
    """Replace this process with ``cmd`` (Flower's own binary), or only print it."""
    import os
    import shlex

    from vane.server.deploy import deployment_env

    if dry_run:
        typer.echo(shlex.join(cmd))
        return
    os.execvpe(cmd[0], cmd, deployment_env())


@server_app.command("supernode")
def supernode_command_cli(
    superlink: str = typer.Option("127.0.0.1:9093", "--superlink", help="SuperLink host:port."),
    ca_cert: str = typer.Option(..., "--ca", help="The CA certificate (ca.crt)."),
    key: str = typer.Option(..., "--key", help="This SuperNode's private key (registered with flwr)."),
    store: str = typer.Option(..., "--store", help="The encrypted Vane store of this device."),
    key_file: str = typer.Option(..., "--key-file", help="The store's key file."),
    port: int = typer.Option(9094, "--port", help="Port of this SuperNode's local API (one per node)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command instead of running it."),
) -> None:
    """Run flower-supernode for one device store, authenticated with its key."""
    from vane.server.deploy import supernode_command

    _exec_or_print(supernode_command(superlink, ca_cert, key, store, key_file, port), dry_run)


@server_app.command("app")
def app_dir_command(
    directory: str = typer.Argument(..., help="Folder to write the Flower app's pyproject.toml into."),
    superlink: str = typer.Option("127.0.0.1:9093", help="SuperLink host:port for the connection."),
    ca: str = typer.Option(..., help="The CA certificate (ca.crt) from `vane server certs`."),
    name: str = typer.Option("vane", help="Name of the SuperLink connection in $FLWR_HOME/config.toml."),
    flwr_home: str = typer.Option("", help="FLWR_HOME to write the connection to (default: $FLWR_HOME or ~/.flwr)."),
) -> None:
    """Write a minimal Flower app (every run_config key with its default) and the SuperLink connection."""
    import os
    from pathlib import Path

    from vane.server.deploy import write_app_dir, write_flower_config

    if not Path(ca).is_file():
        raise typer.BadParameter(f"CA certificate {ca!r} does not exist", param_hint="--ca")
    home = Path(flwr_home or os.environ.get("FLWR_HOME") or Path.home() / ".flwr")
    app = write_app_dir(directory)
    config = write_flower_config(home, name, superlink, ca)
    typer.echo(f"app: {app / 'pyproject.toml'} (edit [tool.flwr.app.config] to tune the run)")
    typer.echo(f"connection {name!r}: {config}")
    typer.echo(f"start a run:  FLWR_HOME={home} flwr run {app} {name} --stream")
