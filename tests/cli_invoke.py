"""Running the CLI in-process in tests, and the shape every user error must have."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from recip_tourney.cli import app

runner = CliRunner(env={"COLUMNS": "100"})


def cli(*args: object) -> Result:
    """Invoke the CLI in-process."""
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    """Invoke the CLI and assert it succeeded."""
    result = cli(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def one_line_error(result: Result) -> str:
    """Assert the shape of a user error (exit 2, one line on stderr, no traceback)."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]
