"""Real gait recordings as :class:`fescontrol.sim.recording.Recording` objects.

``load_recording(name_or_path, side)`` accepts

* a short name: ``"physionet:GaCo01"`` (walk ``_01``) or ``"physionet:GaPt03_01"``,
  ``"gaitmap:imu_sample"``, ``"ipol:1-1"``. Bundled data (``sim/data``) are used first,
  then the development folder ``../shared/gait-data`` (or ``$FES_GAIT_DATA``);
* a path to a file of any of the three formats (``.gz`` allowed), picked by its name
  and, failing that, by its first line;
* a path to a generic CSV recording (``*.csv``, docs/recordings.md; any other ``.csv``
  that is not a gaitmap file is read as one, so its loader names what is wrong).

Loaders: :func:`load_physionet`, :func:`load_gaitmap`, :func:`load_ipol` (see their
modules for the format and the reference-event rules).
"""
from __future__ import annotations

from pathlib import Path

from ..recording import Recording, RecordingError
from ._common import (BUNDLED_DIR, GAIT_DATA_ENV, open_text, shared_gait_data_dir, strip_gz,
                                 with_or_without_gz)
from .csv_recording import CsvRecordingError, load_csv_recording, write_csv_recording
from .gaitmap import load_gaitmap
from .ipol import available_trials, ipol_data_dir, load_ipol
from .physionet import load_physionet

__all__ = ["load_recording", "list_bundled", "list_available", "resolve_name",
           "load_physionet", "load_gaitmap", "load_ipol", "load_csv_recording", "write_csv_recording",
           "CsvRecordingError", "recording_kind", "shared_gait_data_dir",
           "ipol_data_dir", "BUNDLED_DIR"]

_PREFIXES = ("physionet", "gaitmap", "ipol")


def _physionet_dirs() -> list[Path]:
    return [BUNDLED_DIR / "physionet_gaitpdb", shared_gait_data_dir() / "physionet_gaitpdb" / "data"]


def _gaitmap_dirs() -> list[Path]:
    return [BUNDLED_DIR / "gaitmap_example", shared_gait_data_dir() / "gaitmap_example" / "example_data"]


def list_bundled() -> list[str]:
    """Short names of the recordings shipped in ``sim/data`` (each has a left and a right foot)."""
    names = []
    folder = BUNDLED_DIR / "physionet_gaitpdb"
    for p in sorted(folder.glob("*.txt*")):
        stem = strip_gz(p.name)[:-4]
        names.append("physionet:" + (stem[:-3] if stem.endswith("_01") else stem))
    for p in sorted((BUNDLED_DIR / "gaitmap_example").glob("imu_*.csv*")):
        names.append("gaitmap:" + strip_gz(p.name)[:-4])
    return names


def list_available() -> list[str]:
    """Bundled names plus those found in the shared development folder (if present)."""
    names = list_bundled()
    shared = shared_gait_data_dir() / "physionet_gaitpdb" / "data"
    if shared.is_dir():
        for p in sorted(shared.glob("*_*.txt*")):
            stem = strip_gz(p.name)[:-4]
            names.append("physionet:" + (stem[:-3] if stem.endswith("_01") else stem))
    gm = shared_gait_data_dir() / "gaitmap_example" / "example_data"
    if gm.is_dir():
        for p in sorted(gm.glob("imu_*.csv*")):
            suffix = strip_gz(p.name)[4:-4]
            if with_or_without_gz(gm / f"stride_events_{suffix}.csv") is not None:
                names.append("gaitmap:" + strip_gz(p.name)[:-4])
    names += ["ipol:" + t for t in available_trials()]
    return list(dict.fromkeys(names))


def resolve_name(name: str) -> Path:
    """The file behind a short name; FileNotFoundError lists where it was looked for."""
    prefix, _, rest = name.partition(":")
    if prefix not in _PREFIXES or not rest:
        raise RecordingError(f"{name!r}: a short name is '<source>:<recording>' with source in "
                             f"{_PREFIXES}, e.g. 'physionet:GaCo01', 'gaitmap:imu_sample', 'ipol:1-1'")
    if prefix == "physionet":
        stem = rest if "_" in rest else rest + "_01"
        candidates = [d / f"{stem}.txt" for d in _physionet_dirs()]
    elif prefix == "gaitmap":
        candidates = [d / f"{rest}.csv" for d in _gaitmap_dirs()]
    else:
        candidates = [ipol_data_dir() / f"{rest}.json"]
    for cand in candidates:
        found = with_or_without_gz(cand)
        if found is not None:
            return found
    where = ("the IPOL healthy-gait set (AGPL) is not bundled: it is read from "
             f"{ipol_data_dir()} when present (the shared gait-data folder, or ${GAIT_DATA_ENV})"
             if prefix == "ipol" else "looked in " + ", ".join(str(c.parent) for c in candidates))
    raise FileNotFoundError(f"recording {name!r}: not found ({where}); "
                            f"`fes sim --list-recordings` lists the names available here")


def recording_kind(path: str | Path) -> str:
    """"physionet", "gaitmap", "ipol" or "csv" for a recording file (ValueError otherwise)."""
    return _sniff(Path(path))


def _sniff(path: Path) -> str:
    name = strip_gz(path.name)
    if name.endswith(("_lf.txt", "_rf.txt", ".json")):
        return "ipol"
    if not path.exists():
        if with_or_without_gz(Path(str(path) + ".json")) is not None:
            return "ipol"   # a trial stem such as .../GaitData/1-1
        hint = ""
        if "gait-data" in path.parts or "ipol" in str(path).lower():
            hint = (" (the shared gait-data folder, with the IPOL set (AGPL), is not bundled: it is read from "
                    f"../shared/gait-data next to the repository or ${GAIT_DATA_ENV} when present)")
        raise FileNotFoundError(f"recording {str(path)!r}: no such file{hint}; give a bundled name "
                                f"(`fes sim --list-recordings`), synthetic:NAME or a recording file")
    if path.is_dir():
        raise RecordingError(f"recording {str(path)!r} is a folder; give a recording file (gaitpdb .txt, "
                             f"gaitmap imu_*.csv, IPOL trial) or a bundled name (`fes sim --list-recordings`)")
    if name.startswith("imu_") and name.endswith(".csv"):
        return "gaitmap"
    try:
        with open_text(path) as fh:
            first = fh.readline(4096)
    except (UnicodeDecodeError, EOFError, OSError) as err:
        if not isinstance(err, (UnicodeDecodeError, EOFError)) and err.strerror:
            raise
        raise RecordingError(f"recording {str(path)!r} is not a text file ({type(err).__name__}); give a "
                             f"gaitpdb .txt, gaitmap imu_*.csv or IPOL trial file, .gz allowed") from None
    if first.startswith("Acquisition frequency"):
        return "ipol"
    if first.startswith("sensor,") or ",left_sensor," in first:
        return "gaitmap"
    if name.endswith(".csv"):
        return "csv"      # the generic format; its loader names what is wrong with the file
    if len(first.split()) == 19:
        return "physionet"
    raise RecordingError(f"recording {str(path)!r}: not a gaitpdb, gaitmap or IPOL file (first line "
                         f"{first[:60]!r}); give one of those (.gz allowed) or a bundled name")


def load_recording(name_or_path: str | Path, side: str | None = None, **kwargs) -> Recording:
    """Load one foot (``side`` "left"/"right"; default: the file's own foot, else left).

    ``kwargs`` go to the loader (e.g. ``load_threshold_n`` for physionet).
    """
    text = str(name_or_path)
    prefix = text.split(":", 1)[0] if isinstance(name_or_path, str) and ":" in text else ""
    if prefix in _PREFIXES or (len(prefix) > 1 and prefix.isidentifier() and not Path(text).exists()):
        path = resolve_name(text)
    else:
        path = Path(name_or_path)
    kind = _sniff(path)
    if kind == "csv":
        return load_csv_recording(path, side, **kwargs)
    if kind == "ipol":
        return load_ipol(path, side, **kwargs)
    side = side or "left"
    if kind == "gaitmap":
        return load_gaitmap(path, side, **kwargs)
    return load_physionet(path, side, **kwargs)
