"""The README is the entry point: its commands and its settings table must be the real ones."""

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from thumbproxy.config import SETTINGS

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


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
