"""firmware/tools/fsr_table.py: the shipped table is what its CSV says; bad CSVs get one line."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fescontrol.drivers import sensor_protocol as sp

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "firmware" / "tools" / "fsr_table.py"


def run_tool(*args, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=timeout, cwd=ROOT)


def test_shipped_header_is_generated_from_the_nominal_csv(tmp_path):
    out = tmp_path / "fsr_table.h"
    done = run_tool("header", ROOT / "firmware/calibration/fsr_nominal.csv", "-o", out)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (ROOT / "firmware/src/fsr_table.h").read_text(), \
        "firmware/src/fsr_table.h is stale: regenerate it with the command in fsr_nominal.csv"


def test_masses_become_newtons_in_tenths(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("# bench, 2026-12-01\nmass_kg,counts\n0,975\n1,600\n10,150\n")
    done = run_tool("header", csv, "-o", tmp_path / "t.h")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "t.h").read_text()
    assert "{150u, 981u}" in text and "{600u, 98u}" in text and "{975u, 0u}" in text


@pytest.mark.parametrize("body, message", [
    ("force,counts\n0,900\n", "expected 'force_n,counts' or 'mass_kg,counts'"),
    ("force_n,counts\n0,900\n", "at least 2 are needed"),
    ("force_n,counts\n0,900\n10,1015\n", ":3: counts 1015 must be a whole number in 4..1009"),
    ("force_n,counts\n0,900\nten,500\n", ":3: 'ten,500' is not two numbers"),
    ("force_n,counts\n0,900\n-5,500\n", ":3: force_n -5 must be >= 0"),
    ("force_n,counts\n0,900\n10,500\n20,700\n", "not strictly monotonic"),
    ("force_n,counts\n0,900\n10,900\n", "two points read 900 counts"),
])
def test_bad_csv_is_one_line_naming_file_and_line(tmp_path, body, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    out = tmp_path / "t.h"
    done = run_tool("header", csv, "-o", out)
    assert done.returncode == 2 and message in done.stderr and "bad.csv" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_measure_reads_the_unit_over_a_pty(tmp_path):
    """A unit streaming frames on a pty: each prompted mass gets the median heel_raw."""
    controller, device = pty.openpty()
    stop = threading.Event()
    level = {"counts": 960}

    def unit():
        seq = 0
        while not stop.is_set():
            frame = sp.SensorFrame(seq & 0xFFFF, seq * 10_000, sp.FLAG_HEEL_PRESENT, 0, level["counts"])
            try:
                os.write(controller, sp.encode_frame(frame))
            except OSError:
                return
            seq += 1
            time.sleep(0.01)

    thread = threading.Thread(target=unit, daemon=True)
    thread.start()
    out = tmp_path / "mine.csv"
    try:
        proc = subprocess.Popen([sys.executable, str(TOOL), "measure", "--port", os.ttyname(device),
                                 "--masses", "0,2", "--seconds", "0.3", "-o", str(out)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdin.write("\n")
        proc.stdin.flush()
        first = proc.stderr.readline()  # the prompt, then the unloaded reading's line
        level["counts"] = 420           # now "load 2 kg"
        stdout, rest = proc.communicate("\n", timeout=20)
        stderr = first + rest
    finally:
        stop.set()
        thread.join(2)
        os.close(controller)
        os.close(device)
    assert proc.returncode == 0, stderr
    assert "0 kg: 960 counts" in stderr and "2 kg: 420 counts" in stderr
    assert out.read_text().splitlines()[1:] == ["mass_kg,counts", "0,960", "2,420"]
