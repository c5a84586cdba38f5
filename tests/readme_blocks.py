"""Code blocks of a Markdown file, in order, with the readme-test directives written above them.

A fenced block tagged ``python``, ``bash`` or ``sh`` is a step of the README. An HTML comment on the
line right above its fence (blank lines between are allowed) steers the README test::

    <!-- readme-test: skip reason="needs a running SuperLink" -->
    <!-- readme-test: needs="../shared/datasets/browser-history-fixtures" timeout=120 -->

``skip`` skips the block and prints ``reason``; ``needs`` skips it (with that path named) when the
path does not exist relative to the directory the blocks run in; ``timeout`` is the block's time
bound in seconds.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*readme-test:(?P<body>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One executable code block of the README.

    Parameters
    ----------
    index : int
        Its position among the executable blocks (0-based).
    line : int
        The 1-based line of its opening fence.
    language : str
        ``python`` or ``bash``.
    code : str
        Its text.
    options : dict of str to str
        The directive's settings (``skip``, ``reason``, ``needs``, ``timeout``); empty without one.
    """

    index: int
    line: int
    language: str
    code: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The block's first non-empty line, for test ids and messages."""
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "(empty)")
        return first[:60]

    @property
    def test_id(self) -> str:
        """``NN-language-line``: stable enough to rerun one block with ``-k``."""
        return f"{self.index:02d}-{self.language}-L{self.line}"


def parse_directive(body: str) -> dict[str, str]:
    """Read ``skip reason="..." needs=PATH timeout=N`` into a mapping (a bare word maps to ``""``)."""
    options: dict[str, str] = {}
    for token in shlex.split(body):
        key, sep, value = token.partition("=")
        options[key] = value if sep else ""
    return options


def extract_blocks(markdown: str) -> list[Block]:
    """Every ``python``/``bash``/``sh`` fenced block of ``markdown``, in order.

    Raises
    ------
    ValueError
        If a fence is never closed (the README would then hide its remaining blocks).
    """
    lines = markdown.splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] | None = None
    i = 0
    while i < len(lines):
        text = lines[i]
        directive = _DIRECTIVE.match(text)
        if directive:
            pending = parse_directive(directive.group("body"))
            i += 1
            continue
        fence = _FENCE.match(text)
        if not fence:
            if text.strip():
                pending = None
            i += 1
            continue
        marker = fence.group("fence")
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"README line {start + 1}: code fence {marker!r} is never closed")
        language = LANGUAGES.get(fence.group("info").lower())
        if language is not None:
            blocks.append(Block(len(blocks), start + 1, language, "\n".join(body) + "\n", pending or {}))
        pending = None
        i += 1
    return blocks


def skip_reason(block: Block, workdir: Path) -> str | None:
    """Why ``block`` is not run in ``workdir``, or None when it runs."""
    if "skip" in block.options:
        return block.options.get("reason") or "marked skip in the README (no reason given)"
    needs = block.options.get("needs")
    if needs and not (workdir / needs).exists():
        return f"needs {needs}, which is not there"
    return None
