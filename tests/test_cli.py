from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mmat.cli import cli

RELEASE = Path(__file__).resolve().parent / "fixtures" / "release"


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "plugins" in result.output and "release" in result.output


def test_release_command_re_exports(tmp_path: Path) -> None:
    src = RELEASE / "dataset_qa_rr_val_all_RR_sys.jsonl"
    result = CliRunner().invoke(cli, ["release", str(src), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "3 rows ok, 0 bad" in result.output
    assert (tmp_path / src.name).read_bytes() == src.read_bytes()


def test_console_script_turns_errors_into_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    out = subprocess.run([sys.executable, "-m", "mmat.cli", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "No such command 'nope'" in out.stderr
    assert bad.exists() is False
