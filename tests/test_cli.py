"""The CLI surface: every command has help with an example and appears in the CLI reference
(docs/pages/cli.md)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from mrctl.cli.main import app

CLI_REFERENCE = ROOT / "docs" / "pages" / "cli.md"
COMMANDS = ["run", "validate", "up", "status", "logs", "down", "images", "doctor", "worker", "history", "show",
            "timeline", "ui"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_documented(command):
    result = CliRunner().invoke(app, [command, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Example:" in result.output
    reference = CLI_REFERENCE.read_text()
    assert re.search(rf"mrctl {command}\b", reference), f"docs/pages/cli.md does not document mrctl {command}"


def test_run_help_documents_the_exit_codes():
    result = CliRunner().invoke(app, ["run", "--help"], catch_exceptions=False)
    text = " ".join(result.output.split())
    for code in ("0 success", "1 job failed", "2 usage or spec", "3 infrastructure", "130", "143"):
        assert code in text


def test_every_run_option_is_in_the_cli_reference():
    import typer.main

    reference = CLI_REFERENCE.read_text()
    command = typer.main.get_command(app).commands["run"]
    for param in command.params:
        for flag in param.opts:
            if flag.startswith("--") and flag != "--help":
                assert flag in reference, f"docs/pages/cli.md does not document mrctl run {flag}"
