"""`fes sweep --html`: a self-contained page with the table of every point, the Pareto plot,
the held-out score and the invalid points."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from fescontrol.cli import main

pytestmark = pytest.mark.timeout(300)


def test_sweep_html_report(tmp_path):
    html, js = tmp_path / "out" / "sweep.html", tmp_path / "s.json"
    res = CliRunner().invoke(main, [
        "sweep", "physionet:GaCo01", "physionet:GaPt03", "--side", "left", "--workers", "1",
        "--param", "trigger.heel.off_fraction=0.02,0.05,0.3", "--cv-by", "subject", "--folds", "2",
        "--html", str(html), "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert f"report: {html}" in res.output
    text = html.read_text()
    doc = json.loads(js.read_text())
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert text.count("data:image/png;base64,") == 1          # the Pareto plot, inline
    assert not re.search(r"(src|href)=\"(https?:)?//", text)   # nothing fetched from outside
    rows = re.findall(r"<tr class=\"point(?: pareto)?\"><td>(\d+)</td>", text)
    valid = [p for p in doc["points"] if p["valid"]]
    assert sorted(int(r) for r in rows) == [p["index"] for p in valid]      # every valid point, once
    assert int(rows[0]) == doc["best"]["index"]                             # best first
    assert text.count('class="point pareto"') == sum(p["pareto"] for p in valid) > 0
    assert "Invalid points" in text and "0.3" in text                       # the model refused 0.3
    assert "Held-out score (2-fold by subject, 2 subjects)" in text
    held = doc["cv"]["held_out"]
    assert f"recall {held['swing_recall']:.4f}" in text
    assert "NOT a cleared medical device" in text
