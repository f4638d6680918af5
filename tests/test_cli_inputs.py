"""A user's mistake never gives a traceback: bad command lines, run as real ``fes`` processes.

Each line must exit non-zero, print no traceback, and say on exactly one line of standard
error (``fes: …`` for a refused input, ``Error: …`` for click's own usage errors, ``FILE: …``
for a profile that ``fes config check`` refuses; click's "Usage:" lines aside) what was wrong;
the fragment in the table is part of that line. Refused sessions leave no database behind.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fescontrol.core import limits
from fescontrol.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SIM = ["sim", "--recording", "physionet:GaCo01"]

# (id, command line with {placeholders}, fragment of the one error line or None)
BAD_LINES = [
    ("unknown-short-name", ["sim", "--recording", "physionet:NoSuch01"], "'physionet:NoSuch01': not found"),
    ("missing-file", ["sim", "--recording", "{tmp}/nosuch.txt"], "no such file"),
    ("binary-file", ["sim", "--recording", "{bin}"], "is not a text file"),
    ("text-not-a-recording", ["sim", "--recording", "{text}"], "not a gaitpdb, gaitmap or IPOL file"),
    ("folder-as-recording", ["sim", "--recording", "{dir}"], "is a folder"),
    ("unknown-scenario", ["sim", "--recording", "synthetic:moonwalk"], "unknown synthetic scenario"),
    ("ipol-short-name-bad", ["sim", "--recording", "ipol:99-9"], "IPOL healthy-gait set (AGPL) is not bundled"),
    ("unknown-fault", SIM + ["--fault", "melt@3"], "unknown fault 'melt'"),
    ("fault-without-number", SIM + ["--fault", "unplug@soon"], "expected unplug@SECONDS"),
    ("fault-nan-time", SIM + ["--fault", "unplug@nan"], "finite number of seconds"),
    ("stim-fault-batch", SIM + ["--fault", "stim-error@3"], "need --realtime"),
    ("binary-profile", SIM + ["--profile", "{bin}"], None),
    ("folder-as-json", SIM + ["--json", "{dir}"], "is a directory"),
    ("speed-nan", SIM + ["--realtime", "--speed", "nan"], "not a finite number"),
    ("speed-inf", SIM + ["--realtime", "--speed", "inf"], "not a finite number"),
    ("speed-huge", SIM + ["--realtime", "--speed", "1e9"], "is not in the range"),
    ("speed-without-realtime", SIM + ["--speed", "3"], "only with --realtime"),
    ("rate-negative", SIM + ["--rate", "-5"], "is not in the range"),
    ("window-backwards", SIM + ["--window", "5", "1"], "must be before end"),
    ("profile-needs-heel", ["sim", "--recording", "gaitmap:imu_sample", "--profile", str(CONFIGS / "pace_heel.yaml")],
     "needs a heel force sensor"),
    ("run-missing-sensor", ["run", "--sensor", "{tmp}/ttyNONE", "--stim", "emulator", "--duration", "1"],
     "--sensor '{tmp}/ttyNONE': cannot open it (No such file or directory)"),
    ("run-sensor-not-serial", ["run", "--sensor", "/dev/null", "--stim", "emulator", "--duration", "1"],
     "--sensor '/dev/null': cannot open it (not a serial port)"),
    ("run-missing-stim", ["run", "--sensor", "/dev/null", "--stim", "{tmp}/ttySTIM", "--duration", "1"],
     "--stim '{tmp}/ttySTIM': cannot open the stimulator port"),
    ("run-missing-p24", ["run", "--sensor", "/dev/null", "--stim", "p24:{tmp}/ttyP24", "--duration", "1"],
     "--stim 'p24:{tmp}/ttyP24': cannot open the stimulator port (No such file or directory)"),
    ("run-missing-rehastim2", ["run", "--sensor", "/dev/null", "--stim", "rehastim2:{tmp}/ttyRS2", "--duration", "1"],
     "--stim 'rehastim2:{tmp}/ttyRS2': cannot open the stimulator port (No such file or directory)"),
    ("run-fessim-unknown-recording", ["run", "--sensor", "fessim://physionet:NoSuch01?side=left", "--stim",
                                      "emulator", "--duration", "1"], "recording 'physionet:NoSuch01': not found"),
    ("run-fessim-bad-side", ["run", "--sensor", "fessim://physionet:GaCo01?side=up", "--stim", "emulator",
                             "--duration", "1"], "side='up'; allowed: left, right"),
    ("run-fessim-negative-speed", ["run", "--sensor", "fessim://physionet:GaCo01?speed=-1", "--stim", "emulator",
                                   "--duration", "1"], "speed='-1'; allowed a number 0 ≤ speed ≤ 100"),
    ("run-fessim-nan-speed", ["run", "--sensor", "fessim://physionet:GaCo01?speed=nan", "--stim", "emulator",
                              "--duration", "1"], "speed='nan'"),
    ("run-fessim-unknown-option", ["run", "--sensor", "fessim://physionet:GaCo01?sped=1", "--stim", "emulator",
                                   "--duration", "1"], "unknown option 'sped'; allowed: side, speed"),
    ("run-stim-backend-without-port", ["run", "--sensor", "/dev/null", "--stim", "rehastim2", "--duration", "1"],
     "the rehastim2 backend needs a port"),
    ("run-stim-emulator-with-port", ["run", "--sensor", "/dev/null", "--stim", "emulator:/dev/ttyUSB1",
                                     "--duration", "1"], "brings its own device and takes no port"),
    ("run-duration-negative", ["run", "--sensor", "/dev/null", "--stim", "emulator", "--duration", "-5"],
     "'--duration': -5.0 is not in the range"),
    ("run-duration-nan", ["run", "--sensor", "/dev/null", "--stim", "emulator", "--duration", "nan"],
     "not a finite number"),
    ("report-out-onto-file", ["report", "--recording", "physionet:GaCo01", "--out", "{file}"], "is a file"),
    ("diagram-missing-folder", ["diagram", "{tmp}/missing/m.png"], "does not exist"),
    ("diagram-into-folder", ["diagram", "{dir}"], "is a directory"),
    ("live-busy-port", ["live", "--recording", "physionet:GaCo01", "--port", "{busy_port}", "--duration", "3"],
     "127.0.0.1:{busy_port}: Address already in use"),
    ("live-speed-inf", ["live", "--recording", "physionet:GaCo01", "--speed", "inf"], "not a finite number"),
    ("walk-speed-nan", ["walk", "--sim", "physionet:GaCo01", "--no-ui", "--speed", "nan"], "not a finite number"),
    ("walk-duration-negative", ["walk", "--sim", "physionet:GaCo01", "--no-ui", "--duration", "-5"],
     "is not in the range"),
    ("walk-bad-fault", ["walk", "--sim", "physionet:GaCo01", "--no-ui", "--fault", "melt@3"], "unknown fault"),
    ("test-burst-too-long", ["test-burst", "--sim", "physionet:GaCo01", "--duration-ms", "5000"],
     f"5000 is not in the range 1<=x<={limits.TEST_BURST_MS_MAX}"),
    ("test-burst-shorter-than-ramps", ["test-burst", "--sim", "physionet:GaCo01", "--duration-ms", "100"],
     "refused, nothing started or logged"),
    ("calibrate-binary-walk", ["calibrate", "--recording", "{bin}", "--profile", str(CONFIGS / "default.yaml")],
     "is not a text file"),
    ("calibrate-yes-nowhere", ["calibrate", "--recording", "physionet:GaCo01", "--profile",
                               str(CONFIGS / "default.yaml"), "--yes", "--by", "J"], "nowhere to store it"),
    ("config-check-binary", ["config", "check", "{bin}"], None),
    ("log-on-binary-db", ["log", "show", "1", "--db", "{bin}"], "not a SQLite database"),
    ("rollback-bad-version", ["profile", "rollback", "anna", "x", "--by", "J"], "not a version number"),
    ("history-unknown-patient", ["profile", "history", "bob"], "patient 'bob': nothing stored"),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "walk.bin").write_bytes(bytes(range(256)) * 8)
    (tmp / "notes.txt").write_text("hello\nworld\n")
    (tmp / "folder").mkdir()
    (tmp / "existing.txt").write_text("keep me\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    yield {"tmp": str(tmp), "bin": str(tmp / "walk.bin"), "text": str(tmp / "notes.txt"), "dir": str(tmp / "folder"),
           "file": str(tmp / "existing.txt"), "busy_port": str(busy.getsockname()[1])}
    busy.close()


def _fes(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: float = 60):
    import os
    env = {**os.environ, "FES_DB": str(cwd / "sessions.db"), "HOME": str(cwd)}
    env.pop("FES_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "fescontrol.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    """Standard error without click's usage boilerplate ("Usage: …", "Try '… --help'")."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(("Usage: ", "Try '"))]


def test_the_table_is_long_enough():
    assert len(BAD_LINES) >= 19 and len({name for name, _, _ in BAD_LINES}) == len(BAD_LINES)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name, args, fragment", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_a_bad_command_line_gives_one_clear_line(name, args, fragment, bad_inputs, tmp_path):
    args = [a.format(**bad_inputs) for a in args]
    res = _fes(args, tmp_path)
    assert res.returncode not in (0, None), f"{name}: exit 0\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1, f"{name}: expected one error line, got:\n{res.stderr}"
    assert len(lines[0]) > 20
    if fragment is not None:
        assert fragment.format(**bad_inputs) in lines[0], lines[0]
    # a refusal leaves nothing behind: no session database, no profile store
    assert not (tmp_path / "sessions.db").exists(), f"{name}: a session database was created"
    assert not (tmp_path / "profiles").exists() or name.startswith(("rollback", "history"))
    if name == "report-out-onto-file":
        assert Path(bad_inputs["file"]).read_text() == "keep me\n"


def test_fes_debug_keeps_the_traceback_for_a_bug_report(bad_inputs, tmp_path):
    res = _fes(["sim", "--recording", bad_inputs["bin"]], tmp_path, {"FES_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr and "RecordingError" in res.stderr


def test_a_bug_still_shows_its_traceback(monkeypatch):
    """Only the user-error types become one line: a programming error is not hidden."""
    import fescontrol.sim.run
    monkeypatch.setattr(fescontrol.sim.run, "run_simulation", lambda *a, **k: 1 / 0)
    res = CliRunner().invoke(main, ["sim", "--recording", "physionet:GaCo01"])
    assert isinstance(res.exception, ZeroDivisionError)


def test_list_faults_names_every_fault_and_its_argument():
    from fescontrol.sim.faults import FAULT_NAMES
    res = CliRunner().invoke(main, ["sim", "--list-faults"])
    assert res.exit_code == 0, res.output
    for name in FAULT_NAMES:
        assert f"\n  {name}@T" in res.output
    assert "frame count, default 10" in res.output and "needs --realtime" in res.output


def test_list_recordings_names_bundled_synthetic_and_where_ipol_comes_from(monkeypatch, tmp_path):
    monkeypatch.setenv("FES_GAIT_DATA", str(tmp_path / "absent"))
    res = CliRunner().invoke(main, ["sim", "--list-recordings"])
    assert res.exit_code == 0, res.output
    from fescontrol.sim.sources import list_bundled
    for name in list_bundled():
        assert f"  {name}\n" in res.output
    assert "synthetic:walk" in res.output and "IPOL healthy-gait set (AGPL) is never bundled" in res.output
    assert str(tmp_path / "absent") in res.output


def test_sim_help_points_to_existing_docs_and_options():
    out = CliRunner().invoke(main, ["sim", "--help"]).output
    assert "docs/simulator.md" in out and (REPO / "docs" / "simulator.md").is_file()
    assert "--list-recordings" in out and "--list-faults" in out
    for option in ("--list-recordings", "--list-faults", "--realtime", "--speed", "--fault"):
        assert f"`{option}" in (REPO / "docs" / "simulator.md").read_text() or option in (
            REPO / "docs" / "simulator.md").read_text()


def test_test_burst_limit_in_the_cli_is_the_hard_cap():
    from fescontrol.cli import patient as cli_patient
    assert cli_patient.TEST_BURST_MS_MAX == limits.TEST_BURST_MS_MAX


def test_sim_table_has_a_legend_and_the_json_keys_stay(tmp_path):
    res = CliRunner().invoke(main, SIM + ["--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    legend = res.output.split("columns (JSON key in brackets")[1]
    for column, key in (("cover", "swing_coverage_median"), ("postHS", "stim_after_heel_strike_ms.median"),
                        ("pHS95", ".p95"), ("in_win", "onset_in_window_fraction"), ("quiet", "quiet_onsets.total")):
        assert re.search(rf"\n  (\S+ / )?{column}\b", legend) and key in legend, column
    import json
    data = json.loads((tmp_path / "r.json").read_text())
    assert {"swing_coverage_median", "stim_after_heel_strike_ms", "onset_in_window_fraction",
            "quiet_onsets"} <= set(data)
