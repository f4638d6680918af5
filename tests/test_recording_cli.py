"""docs/recordings.md as the commands behave: a recording's warning is one line, and a CSV
without a '# side:' line is the foot a command asks for, in fes sim and fes evaluate alike."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from fescontrol.cli import main

pytestmark = pytest.mark.timeout(240)


def _walk(path: Path, header: str = "t_s,heel_n", extra: str = "", side: str | None = "left") -> Path:
    lines = ["# rate_hz: 100"] + ([f"# side: {side}"] if side else []) + [header]
    for k in range(1200):        # 12 s, one loading and unloading heel every second
        force = 600.0 if (k % 100) < 60 else 0.0
        lines.append(f"{k / 100:.2f},{force}{extra}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unknown_columns_are_one_warning_line_naming_them(tmp_path):
    path = _walk(tmp_path / "extra.csv", header="t_s,heel_n,temp_c", extra=",21.5")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = CliRunner().invoke(main, ["sim", "--recording", str(path)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if "temp_c" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "ignoring unknown column(s) temp_c" in lines[0]
    assert "RecordingWarning" not in res.stderr


def test_a_csv_without_a_side_line_is_the_foot_asked_for(tmp_path):
    path = _walk(tmp_path / "noside.csv", side=None)
    sim = CliRunner().invoke(main, ["sim", "--recording", str(path), "--side", "right",
                                    "--json", str(tmp_path / "sim.json")])
    assert sim.exit_code == 0, sim.output
    out = tmp_path / "ev.json"
    ev = CliRunner().invoke(main, ["evaluate", str(path), "--side", "right", "--workers", "1",
                                   "--json", str(out), "--no-progress"])
    assert ev.exit_code == 0, ev.output
    rows = json.loads(out.read_text())["recordings"]
    assert [r["side"] for r in rows] == ["right"]
    both = CliRunner().invoke(main, ["evaluate", str(path), "--workers", "1", "--json", str(out), "--no-progress"])
    assert both.exit_code == 0, both.output
    assert [r["side"] for r in json.loads(out.read_text())["recordings"]] == ["left"]
    declared = _walk(tmp_path / "left.csv", side="left")
    refused = CliRunner().invoke(main, ["evaluate", str(declared), "--side", "right", "--workers", "1",
                                        "--no-progress"])
    assert refused.exit_code != 0 and "no foot matching --side" in refused.output
