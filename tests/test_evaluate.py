"""`fes evaluate` on a real Dask LocalCluster and on a real `dask scheduler` + `dask worker`
pair started here: same figures as a sequential `fes sim` of each recording, whatever the
number of workers; folders, globs and manifests; bad files reported, not raised."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fescontrol.cli import main
from fescontrol.sim.evaluate import RecordingSetError, expand_recordings
from fescontrol.sim.run import load_any
from fescontrol.sim.sources.csv_recording import write_csv_recording

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def walks(tmp_path_factory) -> Path:
    """A folder of CSV walks: a gaitpdb walk (both feet), an IMU walk, one without events."""
    d = tmp_path_factory.mktemp("walks")
    write_csv_recording(load_any("physionet:GaCo01", "left"), d / "gaco01_left.csv")
    write_csv_recording(load_any("physionet:GaCo01", "right"), d / "deeper" / "gaco01_right.csv")
    write_csv_recording(load_any("gaitmap:imu_sample", "left"), d / "deeper" / "imu.csv")
    write_csv_recording(load_any("synthetic:walk", "right"), d / "noevents.csv")
    (d / "noevents.events.csv").unlink()
    (d / "README.txt").write_text("not a recording\n")
    return d


def _sim_row(path: str, side: str, tmp_path: Path) -> dict:
    out = tmp_path / "sim.json"
    res = CliRunner().invoke(main, ["sim", "--recording", path, "--side", side, "--json", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def _evaluate(args: list[str], tmp_path: Path, name: str = "ev.json") -> dict:
    out = tmp_path / name
    res = CliRunner().invoke(main, ["evaluate", *args, "--json", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_expansion_folders_globs_manifests_and_errors(walks, tmp_path):
    items = expand_recordings([str(walks)])
    names = [(Path(i.source).name, i.side) for i in items]
    assert names == [("gaco01_right.csv", "right"), ("imu.csv", "left"), ("gaco01_left.csv", "left"),
                     ("noevents.csv", "right")]
    assert [i.side for i in expand_recordings([str(walks / "**" / "gaco*.csv")], "left")] == ["left"]
    assert len(expand_recordings(["physionet:GaCo01"])) == 2
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,side,subject\n{walks / 'gaco01_left.csv'},left,P1\n"
                        f"{Path('..') / walks.name / 'deeper' / 'imu.csv'},,P2\n".replace(
                            str(Path('..') / walks.name), str(walks)))
    items = expand_recordings([str(manifest)])
    assert [(Path(i.source).name, i.subject) for i in items] == [("gaco01_left.csv", "P1"), ("imu.csv", "P2")]
    for bad, what in [([str(tmp_path / "nope.csv")], "no such file"), ([str(tmp_path / "*.zzz")], "matches no file")]:
        with pytest.raises(RecordingSetError, match=what):
            expand_recordings(bad)
    manifest.write_text("path,foot\nx.csv,left\n")
    with pytest.raises(RecordingSetError, match=r"m.csv, line 1: a manifest's header"):
        expand_recordings([str(manifest)])


def test_local_cluster_matches_sequential_fes_sim_whatever_the_workers(walks, tmp_path):
    two = _evaluate([str(walks), "--workers", "2"], tmp_path, "two.json")
    assert two["engine"]["workers"] == 2 and two["engine"]["kernels"]
    rows = two["recordings"]
    assert len(rows) == 4
    for row, item in zip(rows, expand_recordings([str(walks)])):
        assert row == _sim_row(item.source, item.side, tmp_path)
    one = _evaluate([str(walks), "--workers", "1"], tmp_path, "one.json")
    for doc in (one, two):
        doc.pop("engine")
    assert one == two
    pooled = two["pooled"]
    assert set(pooled) == set(rows[0])
    assert pooled["swings_reference"] == sum(r["swings_reference"] for r in rows)
    assert pooled["recordings"] == 4 and rows[-1]["scored"] is False and pooled["scored"] is True
    assert {s["subject"] for s in two["subjects"]} == {"GaCo01", "gaitmap:imu_sample", "synthetic:walk"}
    assert two["worst_decile"]["recordings"] and sum(two["plots"]["recall"]["counts"]) == 3
    assert sum(two["plots"]["onset_error_ms"]["counts"]) == pooled["onset_error_ms"]["n"]


def test_html_report_is_self_contained_and_bad_files_are_reported(walks, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,heel_n\n0,1\n0.01,oops\n")
    html = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["evaluate", str(walks / "gaco01_left.csv"), str(bad), "--workers", "1",
                                    "--html", str(html), "--no-progress"])
    assert res.exit_code == 1, res.output
    assert f"{bad}, line 3, column heel_n" in res.output and "Traceback" not in res.output
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 3 and "http://" not in text and "https://" not in text
    assert "gaco01_left" in text and "oops" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_external_scheduler_and_worker_give_the_same_figures(walks, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "dask scheduler did not start"
                time.sleep(0.2)
        procs.append(subprocess.Popen(dask + ["worker", address, "--nthreads", "1", "--nworkers", "1",
                                              "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        remote = _evaluate([str(walks / "gaco01_left.csv"), str(walks / "deeper"), "--scheduler", address,
                            "--workers", "1"], tmp_path, "remote.json")
        assert remote["engine"]["scheduler"] == address and remote["engine"]["workers"] == 1
        local = _evaluate([str(walks / "gaco01_left.csv"), str(walks / "deeper"), "--workers", "1"],
                          tmp_path, "local.json")
        remote.pop("engine"), local.pop("engine")
        assert remote == local
        with pytest.MonkeyPatch.context() as mp:         # the address from the environment
            mp.setenv("DASK_SCHEDULER_ADDRESS", address)
            by_env = _evaluate([str(walks / "gaco01_left.csv")], tmp_path, "env.json")
        assert by_env["engine"]["scheduler"] == address
        assert by_env["recordings"] == [r for r in local["recordings"] if r["recording"] == "gaco01_left"]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
