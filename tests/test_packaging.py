"""One install name (issue #13): the wheel holds only ``fescontrol``; drivers/, sim/ and
configs/ install under it; no code imports them by their repo-folder names."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("drivers", "sim", "configs")
SOURCE_DIRS = ("fescontrol", "drivers", "sim", "configs", "tests", "bench", "docs", "firmware")
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "out", "*.egg-info", "__pycache__", "*.so",
                                     "*.c", ".hypothesis", ".pytest_cache", "node_modules")


def _python_files():
    for top in SOURCE_DIRS:
        yield from (p for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)
    yield REPO / "setup.py"


def test_mapped_folders_import_under_fescontrol_from_any_directory(tmp_path):
    """From the repo root (where ./fescontrol shadows the install) and from elsewhere, the
    mapped folders resolve to the repo's folders, and no top-level name leaks in."""
    code = ("import sys, fescontrol.sim, fescontrol.drivers, fescontrol.configs, fescontrol.sim.sources, "
            "fescontrol.drivers.stimulator, fescontrol.sim.patient.model; "
            "print(fescontrol.sim.__file__); print(fescontrol.drivers.__file__); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('sim', 'drivers', 'configs')))")
    for cwd in (REPO, tmp_path):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        sim_file, drivers_file, leaked = out.stdout.splitlines()
        assert Path(sim_file) == REPO / "sim" / "__init__.py"
        assert Path(drivers_file) == REPO / "drivers" / "__init__.py"
        assert leaked == "[]"
    bare = subprocess.run([sys.executable, "-c", "import sim"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert bare.returncode != 0 and "No module named 'sim'" in bare.stderr


def test_in_pytest_the_mapped_packages_are_the_repo_folders():
    import fescontrol.configs
    import fescontrol.drivers
    import fescontrol.sim
    assert Path(fescontrol.sim.__file__).parent == REPO / "sim"
    assert Path(fescontrol.drivers.__file__).parent == REPO / "drivers"
    assert Path(fescontrol.configs.__file__).parent == REPO / "configs"


def test_no_code_imports_a_repo_folder_by_its_old_top_level_name():
    """pytest puts the repo root on sys.path, so `import sim` would still work here and load a
    second copy of every module; this keeps it out of the code."""
    bad = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in MAPPED]
    assert not bad, "import these as fescontrol.<name> (or relatively inside drivers/ and sim/): " + ", ".join(bad)


def test_bundled_profiles_come_from_the_configs_package():
    from importlib import resources

    from fescontrol.core.profile import ProfileError, bundled_profile_path, load_profile
    names = sorted(e.name for e in resources.files("fescontrol.configs").iterdir() if e.name.endswith(".yaml"))
    assert names == ["adaptive.yaml", "combined.yaml", "default.yaml", "pace_heel.yaml", "two_channel.yaml",
                     "walkaide_tilt.yaml"]
    for name in names:
        assert load_profile(bundled_profile_path(name[:-5])).stimulation.amplitude_ma > 0
    with pytest.raises(ProfileError, match="no bundled profile 'nope'; known: adaptive, combined, default"):
        bundled_profile_path("nope")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree (the working tree is left alone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=COPY_IGNORE, symlinks=True)
    env = {**os.environ, "FES_PURE_PYTHON": "1"}   # the contents are the question, not the compiler
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("fescontrol-*.whl")
    return whl


def test_wheel_has_one_top_level_name_and_ships_the_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"fescontrol"}
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["fescontrol"]
    for must in ("fescontrol/configs/default.yaml", "fescontrol/configs/walkaide_tilt.yaml",
                 "fescontrol/sim/data/physionet_gaitpdb/GaCo01_01.txt.gz",
                 "fescontrol/sim/data/gaitmap_example/imu_sample.csv.gz",
                 "fescontrol/sim/patients/drop_foot.yaml", "fescontrol/kernel/core.py",
                 "fescontrol/kernel/core.pxd", "fescontrol/kernel/_fdio.pxd",
                 "fescontrol/tools/live/static/index.html", "fescontrol/drivers/stimulator.py",
                 "fescontrol/sim/sources/physionet.py"):
        assert must in names, must


def test_installed_wheel_runs_from_its_own_files(wheel, tmp_path):
    """Installed (not editable), the package reads its profiles, recordings and population from
    site-packages: a file missing from package_data fails here, not on a user's machine."""
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                          "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    code = ("import fescontrol, fescontrol.sim\n"
            "from fescontrol.core.profile import bundled_profile_path, load_profile\n"
            "from fescontrol.sim.sources import load_recording\n"
            "from fescontrol.sim.patient.params import BUNDLED_POPULATIONS\n"
            "print(fescontrol.__file__); print(fescontrol.sim.__file__); print(bundled_profile_path())\n"
            "load_profile(bundled_profile_path('combined'))\n"
            "rec = load_recording('physionet:GaCo01', side='left'); assert rec.duration_s > 10\n"
            "assert all(p.is_file() for p in BUNDLED_POPULATIONS.values())\n")
    # the wheel is built without the extension (FES_PURE_PYTHON=1), so CI's FES_REQUIRE_COMPILED=1
    # does not apply to it
    env = {**os.environ, "PYTHONPATH": str(site), "FES_GAIT_DATA": str(tmp_path / "absent"),
           "FES_REQUIRE_COMPILED": "0"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    for line in run.stdout.splitlines():
        assert Path(line).is_relative_to(site), line
