"""The layers are facts, not conventions: the one gate is the only caller of ``set_output``
(the import-linter contracts in .importlinter, run by ``make lint``, check the imports)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("fescontrol", "drivers", "sim")   # everything the wheel installs
GATE = REPO / "fescontrol" / "safety"


def _set_output_calls(path: Path) -> list[int]:
    """Lines calling ``<anything>.set_output(`` or naming it in ``getattr``, outside a method
    that is itself ``set_output`` (a driver handing its output to its base class or link)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines: list[int] = []

    def visit(node: ast.AST, in_set_output: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_set_output = node.name == "set_output"
        if isinstance(node, ast.Call) and not in_set_output:
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "set_output":
                lines.append(node.lineno)
            elif isinstance(f, ast.Name) and f.id == "getattr" and any(
                    isinstance(a, ast.Constant) and a.value == "set_output" for a in node.args):
                lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_set_output)

    visit(tree, False)
    return lines


def test_only_the_safety_gate_calls_set_output():
    found, outside = [], []
    for top in PACKAGE_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            for line in _set_output_calls(path):
                (found if path.is_relative_to(GATE) else outside).append(f"{path.relative_to(REPO)}:{line}")
    assert not outside, "stimulator output must pass the safety supervisor: " + ", ".join(outside)
    assert found, "the gate itself calls set_output (else this test checks nothing)"


def test_the_check_sees_a_call_outside_the_gate(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def go(stim, out):\n    stim.set_output(out)\n    getattr(stim, 'set_output')(out)\n\n"
                   "class Wrapper:\n    def set_output(self, out):\n        self.inner.set_output(out)\n")
    assert _set_output_calls(bad) == [2, 3]
