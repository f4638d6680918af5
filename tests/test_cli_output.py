"""What ``fes`` prints and draws says what it shows: the plot's window, plain timing axes,
a quiet ``--no-ui`` (one summary of the session log, not lines per step)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _suptitle(monkeypatch, call) -> str:
    """Run ``call`` and return the title of the figure it saves (captured at savefig)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    titles = []
    original = Figure.savefig

    def capture(self, *args, **kwargs):
        titles.append(self._suptitle.get_text() if self._suptitle is not None else "")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", capture)
    call()
    return titles[-1]


def test_the_demo_plot_says_which_part_of_the_walk_it_shows(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from fescontrol.cli import main
    out = tmp_path / "walk.png"
    holder = {}
    title = _suptitle(monkeypatch, lambda: holder.setdefault("res", CliRunner().invoke(
        main, ["sim", "--recording", "physionet:GaCo01", "--plot", str(out)])))
    res = holder["res"]
    assert res.exit_code == 0, res.output
    assert re.search(r"8 s of 121 s shown \(\d+\.\d–\d+\.\d s\); --window START END shows another part", title), title
    assert "plot: " in res.output and "8 s of 121 s" in res.output and "--window START END" in res.output
    title = _suptitle(monkeypatch, lambda: CliRunner().invoke(
        main, ["sim", "--recording", "physionet:GaCo01", "--plot", str(out), "--window", "30", "50"]))
    assert "20 s of 121 s shown (30.0–50.0 s)" in title and "--window" not in title


def test_timing_axes_have_plain_millisecond_labels():
    """Nearly constant delays (one loop period plus float noise) once read '1e-11+1e1'."""
    from fescontrol.tools.report import StepRow, WalkReport, _timing_figure
    rows = [StepRow(i + 1, float(i), float(i) + 0.01, 10.000000000001 + (i % 2) * 1e-12, 400.0, i + 0.4,
                    150.00000000002, False) for i in range(30)]
    report = WalkReport.__new__(WalkReport)
    report.rows = rows
    fig = _timing_figure(report)
    fig.canvas.draw()
    for ax in fig.axes:
        formatter = ax.yaxis.get_major_formatter()
        assert formatter.get_offset() == "", formatter.get_offset()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and not any("e" in t.lower() for t in labels), labels
        lo, hi = ax.get_ylim()
        assert hi - lo >= 20 - 1e-9
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_no_ui_is_quiet_about_log_commits_unless_verbose(tmp_path):
    def walk(*extra):
        return subprocess.run([sys.executable, "-m", "fescontrol.cli", "walk", "--sim", "physionet:GaCo01", "--no-ui",
                               "--duration", "8", "--speed", "4", "--db", str(tmp_path / "s.db"), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    quiet = walk()
    assert quiet.returncode == 0, quiet.stderr
    steps = len(re.findall(r"step \d+ done", quiet.stdout))
    assert steps >= 3 and "log: committed" not in quiet.stdout
    summary = re.findall(r"^log: session \d+ in .*s\.db: (\d+) steps, \d+ bursts, \d+ events saved$",
                         quiet.stdout, re.M)
    assert len(summary) == 1 and int(summary[0]) >= steps - 1, quiet.stdout
    loud = walk("--verbose")
    assert loud.returncode == 0 and loud.stdout.count("log: committed") >= 2
