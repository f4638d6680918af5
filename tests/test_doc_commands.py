"""Every ``fes …`` command shown in README.md and docs/*.md is true.

Each command line of a code block is run, in the order the documents show them (README first,
then docs/ by name), as a real ``fes`` process in one fresh folder with a fresh profile store
and session database, and must exit 0. Lines that need hardware, stand for a value the reader
fills in, or open the interactive patient screen are skipped, each for a reason listed in
:data:`SKIP_RULES`; the test also checks that the skip list stays short, so the documents
cannot drift into untested examples.

The fresh folder holds what the documents tell a newcomer to make: copies of ``configs/`` and
``docs/`` (so ``fes diagram docs/gait-machine.png`` does not overwrite the repository's file),
``my-patient.yaml``/``my-profile.yaml`` (copies of the default profile, as "copy one, edit it"
says) and ``p.yaml`` (the same with ``patient_id: P001``, as docs/orthotist.md requires).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fescontrol.sim.sources import shared_gait_data_dir

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))

#: (pattern in the command line, why it is not run here)
SKIP_RULES = [
    (r"/dev/tty", "needs the sensor or stimulator hardware"),
    (r"\.\.\.|…", "'...' stands for the reader's own options"),
    (r"\b(PORT|PATIENT|SESSION|RECORDING|NAME|FILE|N)\b", "a placeholder the reader fills in"),
    (r"walk\.fesraw", "replays the walk recorded on hardware by the line above"),
    (r"^fes (walk|train) --sim(?!.*--no-ui)", "opens the interactive patient screen (tests/test_patient_ui.py "
                                                "drives it over a real pseudo-terminal)"),
    (r"^fes (evaluate|sweep) \.\./shared/gait-data/\S+/data\b",
     "a cohort over the whole shared data set on a dask cluster: minutes of CPU on every core; the same "
     "commands run on small cohorts in tests/test_evaluate.py and tests/test_sweep.py"),
]
#: Commands that run until Ctrl-C: started, waited for until they serve, then interrupted.
UNTIL_INTERRUPTED = {"live": "http://127.0.0.1:"}
#: A real-time command (its simulated sensor and stimulator are threads of the same process:
#: fessim:// at speed > 0, --realtime, fes walk/train/test-burst --sim) that
#: ends in one of these wall-clock faults is run once more: on a machine loaded by other test
#: processes, the simulator can be starved past stale_ms and the loop then latches the fault, as
#: it must. A command that fails twice, or fails otherwise, is a failure.
WALL_CLOCK_FAULTS = re.compile(r"sensor_stale|clock_drift|no acknowledgement for .* within")
REAL_TIME = re.compile(r"fessim://\S*speed=(?!0\b)|--realtime(?!.*--speed 0\b)|fes (walk|train|test-burst) --sim")
#: at most this share of the documented commands may be skipped
MAX_SKIPPED_FRACTION = 0.4


def doc_commands() -> list[tuple[str, int, str]]:
    """(document name, line number, command) for every ``fes`` line inside a code block."""
    out = []
    for doc in DOCUMENTS:
        inside, pending = False, None
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                inside, pending = not inside, None
                continue
            text = line.strip()
            if pending is not None:            # a continuation line of the command above
                pending[2] += " " + text.rstrip("\\").strip()
                if not text.endswith("\\"):
                    out.append(tuple(pending))
                    pending = None
            elif inside and text.startswith("fes "):
                if text.endswith("\\"):
                    pending = [doc.relative_to(REPO).as_posix(), number, text.rstrip("\\").strip()]
                else:
                    out.append((doc.relative_to(REPO).as_posix(), number, text))
    return out


def skip_reason(command: str) -> str | None:
    code = _without_comment(command)
    for pattern, reason in SKIP_RULES:
        if re.search(pattern, code):
            return reason
    return None


def _without_comment(command: str) -> str:
    return " ".join(shlex.split(command, comments=True))


def _workspace(root: Path) -> None:
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "docs", root / "docs")
    default = (REPO / "configs" / "default.yaml").read_text(encoding="utf-8")
    for name in ("my-patient.yaml", "my-profile.yaml"):
        (root / name).write_text(default, encoding="utf-8")
    (root / "p.yaml").write_text(default + "\npatient_id: P001\n", encoding="utf-8")


def _argv(command: str) -> tuple[list[str], str | None]:
    """The fes arguments and the file of a trailing ``> FILE`` redirection, if any."""
    words = shlex.split(command, comments=True)
    out = None
    if ">" in words:
        i = words.index(">")
        words, out = words[:i], words[i + 1]
    assert words[0] == "fes"
    shared = str(shared_gait_data_dir())
    return [w.replace("../shared/gait-data", shared) for w in words[1:]], out


def _run(argv: list[str], cwd: Path, env: dict, timeout_s: float = 180) -> tuple[int, str, str]:
    cmd = [sys.executable, "-m", "fescontrol.cli", *argv]
    ready = UNTIL_INTERRUPTED.get(argv[0])
    if ready is None:
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s,
                             stdin=subprocess.DEVNULL)
        return res.returncode, res.stdout, res.stderr
    # e.g. fes live: a free port instead of 8765 (other tests may serve there), Ctrl-C once it serves
    proc = subprocess.Popen(cmd + ["--port", "0"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    seen = ""
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            seen += line
            if ready in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert ready in seen, f"{argv}: never served:\n{seen}\n{err}"
    return proc.returncode, seen + rest, err


def test_only_real_time_commands_are_retried_and_only_for_wall_clock_faults():
    assert REAL_TIME.search("fes run --sensor 'fessim://physionet:GaCo01?side=left&speed=1' --stim emulator")
    assert not REAL_TIME.search("fes run --sensor 'fessim://physionet:GaCo01?side=left&speed=0' --stim emulator")
    assert not REAL_TIME.search("fes sim --recording physionet:GaCo01 --json out/demo.json")
    # the patient commands on the simulator replay over a pty in real time too
    assert REAL_TIME.search("fes walk --sim physionet:GaCo01 --no-ui --speed 4 --duration 20 --log-frames")
    assert not REAL_TIME.search("fes walk --sensor /dev/ttyUSB0 --stim /dev/ttyUSB1")
    assert WALL_CLOCK_FAULTS.search("fault latched: sensor_stale: sensor data stale (no valid frame in time)")
    assert not WALL_CLOCK_FAULTS.search("profile configs/x.yaml: unknown key 'amplitude'")


def test_documents_show_commands_and_few_are_skipped():
    commands = doc_commands()
    assert len(commands) >= 30, commands
    skipped = [(doc, n, c, skip_reason(c)) for doc, n, c in commands if skip_reason(c)]
    listing = "\n".join(f"{d}:{n}: {c}  [{r}]" for d, n, c, r in skipped)
    assert len(skipped) <= MAX_SKIPPED_FRACTION * len(commands), listing
    # the README's own quick path is run, not skipped
    for needle in ("fes calibrate --recording physionet:GaCo01 --profile configs/default.yaml",
                   "fes profile history anna", "fes profile rollback anna 1", "fes profile show anna",
                   "fes sim --list-faults", "fes sim --list-recordings", "ipol_healthy_imu"):
        assert any(needle in c and not skip_reason(c) for _, _, c in commands), needle


@pytest.mark.timeout(900)
def test_every_documented_command_runs(tmp_path):
    _workspace(tmp_path)
    env = {**os.environ, "FES_DB": str(tmp_path / "sessions.db"), "HOME": str(tmp_path), "COLUMNS": "120"}
    env.pop("FES_DEBUG", None)
    ran, failures = 0, []
    ipol_present = (shared_gait_data_dir() / "ipol_healthy_imu").is_dir()
    for doc, number, command in doc_commands():
        if skip_reason(command):
            continue
        argv, out_file = _argv(command)
        code, stdout, stderr = _run(argv, tmp_path, env)
        if code != 0 and REAL_TIME.search(command) and WALL_CLOCK_FAULTS.search(stdout + stderr):
            code, stdout, stderr = _run(argv, tmp_path, env)
        ran += 1
        where = f"{doc}:{number}: {command}"
        if "Traceback" in stderr:
            failures.append(f"{where}\n  traceback:\n{stderr}")
        elif "ipol_healthy_imu" in command and not ipol_present:
            # a fresh clone has no shared data: the command must say where the data comes from
            if code == 0 or "not bundled" not in stderr:
                failures.append(f"{where}\n  without the shared data: exit {code}, {stderr.strip()}")
        elif code != 0:
            failures.append(f"{where}\n  exit {code}\n  {stderr.strip() or stdout.strip()[-500:]}")
        elif out_file:
            (tmp_path / out_file).write_text(stdout, encoding="utf-8")
    assert not failures, "\n".join(failures)
    assert ran >= 25
    # what the commands promised is there
    assert (tmp_path / "out" / "report" / "report.html").is_file()
    assert (tmp_path / "docs" / "gait-machine.png").exists() or (tmp_path / "docs" / "gait-machine.dot").exists()
    assert "patient_id: P001" in (tmp_path / "p2.yaml").read_text()
