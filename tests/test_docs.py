"""The README is the entry point: its commands and its settings table must be the real ones."""

from pathlib import Path

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
