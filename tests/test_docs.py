"""The README is the entry point: its commands and its settings table must be the real ones."""

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from thumbproxy.cli import _parser
from thumbproxy.config import SETTINGS

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
# The README's shell code blocks: what a reader pastes, in order, after the set-up ones.
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
# What ends one command of a shell line and starts the next.
COMMAND_SEPARATORS = frozenset({"&&", "||", ";", "|"})
# Where the set-up (`python3 -m venv .venv && .venv/bin/pip install ...`) puts its programs.
VENV_BIN = ".venv/bin/"


def test_readme_documents_every_setting() -> None:
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `{setting.field}` |" in README, setting.env


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "python3 -m venv .venv" in ci_command and ci_command.endswith(".venv/bin/pytest")
    assert f"\n{ci_command}\n" in README


def _examples_module() -> ModuleType:
    """docs/examples.py, which draws README's example pictures."""
    spec = importlib.util.spec_from_file_location("examples", REPO / "docs" / "examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_shows_each_display_parameter_as_the_renderer_draws_it_now(tmp_path: Path) -> None:
    examples = _examples_module()
    assert examples.readme_table() in README
    for drawn in examples.write_examples(tmp_path / "drawn", tmp_path / "archive"):
        committed = REPO / "docs" / "examples" / drawn.name
        shown, fresh = (np.asarray(Image.open(path).convert("RGB"), dtype=float) for path in (committed, drawn))
        assert shown.shape == fresh.shape and np.abs(shown - fresh).mean() < 1.0, drawn.name


def readme_commands() -> Iterator[list[str]]:
    """Each command of the README's shell code blocks, as its words (comments dropped)."""
    for block in SHELL_BLOCK.findall(README):
        for line in block.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for word in lexer:
                if word in COMMAND_SEPARATORS:
                    yield command
                    command = []
                else:
                    command.append(word)
            if command:
                yield command


def test_every_readme_command_runs_after_the_set_up() -> None:
    # The set-up never activates the virtual environment: its programs answer only by their path.
    venv_bin = Path(sys.prefix) / "bin"
    system_path = os.pathsep.join(
        folder for folder in os.environ["PATH"].split(os.pathsep) if Path(folder).resolve() != venv_bin.resolve()
    )
    ours = {
        entry.name
        for entry in importlib.metadata.distribution("thumbproxy").entry_points.select(group="console_scripts")
    }
    programs = [command[0] for command in readme_commands()]
    assert f"{VENV_BIN}thumbproxy" in programs and "apt-get" in programs
    for program in programs:
        if program.startswith(VENV_BIN):
            assert (venv_bin / program.removeprefix(VENV_BIN)).is_file(), (
                f"{program}: the set-up installs no such program"
            )
        else:
            assert program not in ours, f"{program}: only {VENV_BIN}{program} is found after the set-up"
            assert shutil.which(program, path=system_path), f"{program}: not found"


def test_the_readme_thumbproxy_commands_take_the_options_they_are_given() -> None:
    examples = [command[1:] for command in readme_commands() if command[0] == f"{VENV_BIN}thumbproxy"]
    assert {"demo", "render", "sign"} <= {arguments[0] for arguments in examples}
    for arguments in examples:
        # argparse exits (status 2) on an option the command does not have.
        assert _parser().parse_args(arguments).command == arguments[0]
