"""The README runs: every ``python`` and ``bash``/``sh`` block of README.md, in order, in one fresh directory.

The blocks share a temporary directory laid out like a checkout beside the shared datasets
(``work/vane`` is the working directory and ``work/shared/datasets`` links to the real
``../shared/datasets`` when it exists), so later blocks see the files earlier ones wrote. A shell
block runs with ``bash -e`` and the venv's ``bin`` first on PATH (what ``source
.venv/bin/activate`` does); a Python block runs in its own subprocess of the venv's python. Each
block has a time bound. A block under ``<!-- readme-test: skip reason="..." -->`` is skipped with
that reason, one under ``needs="PATH"`` when PATH is missing (:mod:`readme_blocks`); the reasons
and every block's duration are printed at the end (``pytest -s -rs`` shows them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from readme_blocks import Block, extract_blocks, parse_directive, skip_reason

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_TIMEOUT = 150.0

BLOCKS = extract_blocks(README.read_text(encoding="utf-8"))


class Journey:
    """The shared directory of one README run, what happened to each block and how long it took."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "work" / "vane"
        self.cwd.mkdir(parents=True)
        if DATASETS.is_dir():
            (root / "work" / "shared").mkdir()
            (root / "work" / "shared" / "datasets").symlink_to(DATASETS, target_is_directory=True)
        self.failed: Block | None = None
        self.log: list[tuple[Block, str, float]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{PYTHON.parent}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(PYTHON.parent.parent)
        env["HOME"] = str(self.root / "home")  # nothing a block writes under ~ lands in the real home
        env["MPLBACKEND"] = "Agg"
        env["COLUMNS"] = "120"
        env.pop("VANE_DEMO_OUT", None)
        env.pop("VANE_SIM_DIR", None)
        return env

    def summary(self) -> str:
        lines = ["README steps on this machine:"]
        for block, outcome, seconds in self.log:
            lines.append(f"  {block.test_id} {outcome:<7} {seconds:6.1f} s  {block.title}")
        total = sum(seconds for _, _, seconds in self.log)
        lines.append(f"  total {total:.1f} s")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    run = Journey(tmp_path_factory.mktemp("readme"))
    (run.root / "home").mkdir()
    yield run
    print("\n" + run.summary())


def run_block(block: Block, journey: Journey) -> subprocess.CompletedProcess[str]:
    timeout = float(block.options.get("timeout") or DEFAULT_TIMEOUT)
    if block.language == "python":
        command = [str(PYTHON), "-c", block.code]
    else:
        command = ["bash", "-e", "-c", block.code]
    return subprocess.run(command, cwd=journey.cwd, env=journey.env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# The whole journey exports a model, runs a small demo, a simulation and an evaluation: ~1-2 minutes.
@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.test_id for b in BLOCKS])
def test_readme_block_runs(block: Block, journey: Journey) -> None:
    reason = skip_reason(block, journey.cwd)
    if reason is None and journey.failed is not None:
        reason = f"an earlier block failed: {journey.failed.test_id} {journey.failed.title!r}"
    if reason is not None:
        journey.log.append((block, "skipped", 0.0))
        print(f"README block {block.test_id} {block.title!r} skipped: {reason}")
        pytest.skip(f"README line {block.line} {block.title!r}: {reason}")
    start = time.monotonic()
    try:
        done = run_block(block, journey)
    except subprocess.TimeoutExpired as exc:
        journey.failed = block
        journey.log.append((block, "timeout", time.monotonic() - start))
        pytest.fail(f"README block {block.test_id} (line {block.line}) {block.title!r} ran over {exc.timeout} s")
    seconds = time.monotonic() - start
    journey.log.append((block, "ok" if done.returncode == 0 else "failed", seconds))
    print(f"README block {block.test_id} {block.title!r}: {seconds:.1f} s")
    if done.returncode != 0:
        journey.failed = block
        pytest.fail(
            f"README block {block.test_id} (line {block.line}) {block.title!r} exited {done.returncode}\n"
            f"--- stdout (end) ---\n{done.stdout[-3000:]}\n--- stderr (end) ---\n{done.stderr[-3000:]}"
        )


def test_readme_blocks_are_found_and_every_skip_gives_its_reason() -> None:
    languages = {b.language for b in BLOCKS}
    assert languages == {"python", "bash"}, languages
    for block in BLOCKS:
        if "skip" in block.options:
            assert block.options.get("reason"), f"README line {block.line}: a skip without reason=\"...\""
        assert set(block.options) <= {"skip", "reason", "needs", "timeout"}, block.options
    # the journey a newcomer follows: the venv, a model, the tracker, a simulation, the model back, evaluation
    text = "\n".join(b.code for b in BLOCKS)
    for step in ("source .venv/bin/activate", "vane server export-model", "InterestTracker.open",
                 "vane sim run", "flwr run .", "vane client install-model", "vane sim evaluate"):
        assert step in text, f"the README has no block running {step!r}"
    runnable = [b for b in BLOCKS if "skip" not in b.options]
    assert len(runnable) >= len(BLOCKS) - 4, "most of the README must run, not be skipped"


def test_block_extraction_reads_directives_and_keeps_order(tmp_path: Path) -> None:
    markdown = (
        "# t\n\n<!-- readme-test: skip reason=\"needs a running SuperLink\" -->\n\n```bash\nflwr ls\n```\n"
        "text\n```python\nprint(1)\n```\n```json\n{}\n```\n"
        "<!-- readme-test: needs=\"nowhere\" timeout=5 -->\n```sh\necho hi\n```\n"
        "<!-- readme-test: skip reason=\"x\" -->\nprose breaks the link\n```bash\necho runs\n```\n"
    )
    blocks = extract_blocks(markdown)
    assert [(b.language, b.code) for b in blocks] == [
        ("bash", "flwr ls\n"), ("python", "print(1)\n"), ("bash", "echo hi\n"), ("bash", "echo runs\n")]
    assert skip_reason(blocks[0], tmp_path) == "needs a running SuperLink"
    assert skip_reason(blocks[1], tmp_path) is None
    assert skip_reason(blocks[2], tmp_path) == "needs nowhere, which is not there"
    assert blocks[2].options["timeout"] == "5"
    assert skip_reason(blocks[3], tmp_path) is None
    (tmp_path / "nowhere").mkdir()
    assert skip_reason(blocks[2], tmp_path) is None
    assert parse_directive(' skip reason="two words" ') == {"skip": "", "reason": "two words"}
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks("```bash\necho open\n")
