"""Every README command that needs no external data works verbatim after the set-up (issue 14, item 1).

The test extracts the README's fenced ``bash`` and ``python`` blocks, in order, and runs them in a clean
folder that looks like a fresh clone after the first set-up command: the repository's files (linked),
the ``logos`` and ``python`` of this environment first on ``PATH``, and ``.logos/`` holding the demo's
outputs (a copy of the session's demo run, so the demo is not run twice). Each command must exit 0.

Marker convention (the README says the same where it is used):

- ``# needs: WHAT`` at the end of a command line marks it as needing something this machine does not
  have (your data mirror, a GPU, a Ray cluster, a base model, object storage, network): it is shown,
  not run. A block whose first line is ``# needs: WHAT`` is skipped whole, for bash and python alike.
- The blocks of the ``## Set-up`` section are the set-up itself (the demo fixture stands for it).
- Other fences (``text``, none) are diagrams and output, never run.

A ``bash`` block's lines run one by one (a trailing ``\\`` continues a line) with ``bash -e -o pipefail``;
a ``python`` block runs as one script. Both run in the same folder, so later commands see what earlier
ones wrote, as for a reader going down the page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
NEEDS = re.compile(r"#\s*needs:", re.IGNORECASE)
SETUP_SECTION = "## Set-up"


@dataclass(frozen=True)
class Snippet:
    language: str  # bash | python
    text: str
    line: int  # where it starts in the README

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text.splitlines()[0][:100]}"


def readme_snippets(text: str) -> list[Snippet]:
    """The runnable commands and scripts, in README order (see the module docstring for what is skipped)."""
    snippets: list[Snippet] = []
    section, fence, body, start = "", None, [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            if line.startswith("## "):
                section = line.strip()
            opened = re.match(r"^```(\w*)", line)
            if opened:
                fence, body, start = opened.group(1), [], number + 1
            continue
        if line.startswith("```"):
            setup = section.startswith(SETUP_SECTION)
            if fence in ("bash", "python") and not setup and body and not NEEDS.match(body[0].strip()):
                snippets.extend(_commands(fence, body, start))
            fence = None
            continue
        body.append(line)
    return snippets


def _commands(language: str, body: list[str], start: int) -> list[Snippet]:
    if language == "python":
        return [Snippet("python", "\n".join(body), start)]
    commands, pending, first = [], "", start
    for offset, line in enumerate(body):
        if not pending:
            first = start + offset
        stripped = line.strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        command, pending = (pending + stripped).strip(), ""
        if command and not command.startswith("#") and not NEEDS.search(command):
            commands.append(Snippet("bash", command, first))
    return commands


def test_marker_convention_is_parsed():
    text = "\n".join([
        "## Set-up", "```bash", "pip install -e .", "```",
        "## Use", "```bash", "logos a   # what it does", "logos b /mirror/x   # needs: your mirror",
        "logos c \\", "    --flag", "```",
        "```bash", "# needs: a GPU", "logos gpu", "```",
        "```python", "print(1)", "```", "```", "a -> b", "```",
    ])
    assert [(s.language, s.text) for s in readme_snippets(text)] == [
        ("bash", "logos a   # what it does"), ("bash", "logos c --flag"), ("python", "print(1)")]


@pytest.fixture
def demo_home(request, tmp_path_factory):
    """The session's demo run (``tests/workflows/conftest.py``), else one of this module's own."""
    try:
        return request.getfixturevalue("demo")
    except pytest.FixtureLookupError:
        from workflows.runner import run_workflow

        home = tmp_path_factory.mktemp("readme-demo") / "home"
        return home, run_workflow("demo", [f"home={home}"])


@pytest.mark.slow
def test_readme_commands_work_verbatim(demo_home, tmp_path):
    """~1-2 minutes after the demo: the tokenizer section ingests, dedups, splits and exports a small ChEMBL
    set, and the workflow section reruns mix and export."""
    home, outcome = demo_home
    assert outcome.record.status == "succeeded"
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in REPO.iterdir():  # a fresh clone's files, without this checkout's own outputs
        if entry.name not in (".logos", ".venv", ".git") and not entry.name.startswith((".pytest", ".ruff")):
            (clone / entry.name).symlink_to(entry)
    shutil.copytree(home, clone / ".logos", symlinks=True)  # what `logos run demo` left behind
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(clone)}
    env.pop("LOGOS_HOME", None)
    snippets = readme_snippets(README.read_text())
    assert len(snippets) >= 10  # the extraction found the README's commands
    for snippet in snippets:
        if snippet.language == "bash":
            command = ["bash", "-e", "-o", "pipefail", "-c", snippet.text]
        else:
            command = [sys.executable, "-c", snippet.text]
        done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{snippet}\nexit {done.returncode}\n{done.stderr[-3000:]}"
