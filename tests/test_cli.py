"""The `fes` command: version and disclaimer, diagram, and the simulated walk contract."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fescontrol import DISCLAIMER
from fescontrol.cli import main
from fescontrol.kernel import DEFAULT_IMPLEMENTATION

SIM_JSON_KEYS = ("swings_reference", "swings_detected", "swing_recall", "swing_precision", "false_onsets",
                 "false_onsets_per_min", "onset_error_ms", "onset_in_window_fraction",
                 "swing_coverage_median", "faults")


def test_version_names_the_active_kernel_and_the_disclaimer():
    out = CliRunner().invoke(main, ["--version"]).output
    assert ("compiled Cython kernel" if DEFAULT_IMPLEMENTATION == "cython" else "pure-Python kernel") in out
    assert "NOT a cleared medical device" in out


def test_help_carries_the_disclaimer():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "NOT a cleared medical device" in out and DISCLAIMER.split()[0] in out


def test_pure_python_path_reports_itself():
    out = subprocess.run([sys.executable, "-m", "fescontrol.cli", "--version"], capture_output=True, text=True,
                         env={"FES_PURE_PYTHON": "1", "PATH": ""}, check=True).stdout
    assert "pure-Python kernel active" in out


def test_diagram_dot_text_and_file(tmp_path):
    out = CliRunner().invoke(main, ["diagram"]).output
    assert out.startswith("digraph gait") and "ramp_up -> swing" in out
    res = CliRunner().invoke(main, ["diagram", str(tmp_path / "m.png")])
    assert res.exit_code == 0
    if shutil.which("dot"):  # a PNG really is a PNG (never mermaid or DOT text under a .png name)
        assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:  # no graphviz: DOT text next to it, and the output says where
        assert (tmp_path / "m.dot").read_text().startswith("digraph gait")
        assert "m.dot" in res.output


def test_sim_demo_contract(tmp_path):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(main, ["sim", "--recording", "physionet:GaCo01", "--json", str(out_json),
                                    "--plot", str(out_png)])
    assert res.exit_code == 0, res.output
    report = json.loads(out_json.read_text())
    for key in SIM_JSON_KEYS:
        assert key in report, key
    assert set(report["onset_error_ms"]) >= {"median", "iqr", "p95"}
    assert report["swings_reference"] > 80 and report["swing_recall"] > 0.9
    assert report["faults"] == []
    assert out_png.stat().st_size > 10_000
    assert "recall" in res.output and "delivered:" in res.output


def test_sim_refuses_a_profile_whose_channels_are_missing(tmp_path):
    from fescontrol.core.profile import bundled_profile_path
    res = CliRunner().invoke(main, ["sim", "--recording", "physionet:GaCo01", "--profile",
                                    str(bundled_profile_path("walkaide_tilt"))])
    assert res.exit_code == 2
    assert "needs an IMU" in res.output


@pytest.mark.parametrize("fault, reason", [("drop@20:30", "sequence_gap"), ("crc@20:10", "link_errors"),
                                           ("clock-jump@20", "clock_jump"), ("stuck-heel@20", "heel_stuck"),
                                           ("unplug@20", "sensor_stale")])
def test_sim_fault_injection_latches_the_right_fault(tmp_path, fault, reason):
    out_json = tmp_path / "f.json"
    res = CliRunner().invoke(main, ["sim", "--recording", "physionet:GaCo01", "--fault", fault,
                                    "--json", str(out_json)])
    assert res.exit_code == 0, res.output
    report = json.loads(out_json.read_text())
    assert report["faults"] and report["faults"][0].startswith(reason)
