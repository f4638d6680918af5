"""Profile history: versioned profiles per patient, as plain YAML files plus a JSON-lines log.

NOT A CLEARED MEDICAL DEVICE.

Layout of a store (a folder chosen explicitly, ``fes profile … --store DIR``)::

    DIR/<patient_id>/v0001.yaml       one validated profile per version (plain YAML)
    DIR/<patient_id>/v0002.yaml
    DIR/<patient_id>/history.jsonl    one JSON object per version: who, when, why, what changed

A history line: ``{"version": 2, "file": "v0002.yaml", "at": "2026-01-31T10:02:03Z",
"by": "J. Smith", "note": "…", "action": "save" | "calibration" | "live" | "rollback",
"based_on": 1, "changes": [{"path": "trigger.heel.debounce_ms", "old": 30, "new": 20}],
"sha256": "<of the YAML file>"}``.

Invariants:
  * only a profile that passes :func:`fescontrol.core.profile.profile_from_dict` is ever written —
    a change the validator rejects is never stored;
  * history is append-only: a rollback adds a NEW version equal to an old one;
  * version numbers per patient are 1, 2, 3, … without gaps; two writers cannot take the same
    number (the history file is locked while a version is added, the YAML file is created
    exclusively and renamed into place complete);
  * a version file changed outside the store is reported (its sha256 no longer matches).

This module does not depend on the session database (fescontrol/session/log.py).
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fescontrol.core.profile_diff import Change, profile_changes
from fescontrol.core.profile import Profile, ProfileError, profile_from_dict, profile_to_yaml, read_profile_data

HISTORY_FILE = "history.jsonl"
ACTIONS = ("save", "calibration", "live", "rollback")
_PATIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class StoreError(ValueError):
    """A store operation was refused: unknown patient or version, bad name, missing author."""


@dataclass(frozen=True)
class Version:
    """One stored profile version (a line of the history)."""

    patient_id: str
    version: int
    file: str
    at: str
    by: str
    note: str
    action: str
    based_on: int | None
    changes: tuple[Change, ...] = field(default=())
    sha256: str = ""

    def to_json(self) -> dict:
        return {"version": self.version, "file": self.file, "at": self.at, "by": self.by,
                "note": self.note, "action": self.action, "based_on": self.based_on,
                "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in self.changes],
                "sha256": self.sha256}

    @classmethod
    def from_json(cls, patient_id: str, data: dict) -> "Version":
        return cls(patient_id, int(data["version"]), data["file"], data["at"], data["by"],
                   data.get("note", ""), data.get("action", "save"), data.get("based_on"),
                   tuple(Change(c["path"], c["old"], c["new"]) for c in data.get("changes", ())),
                   data.get("sha256", ""))

    @property
    def label(self) -> str:
        return f"{self.patient_id}@{self.version}"


def check_patient_id(patient_id: str) -> str:
    """A patient id usable as a folder name, or StoreError."""
    if not isinstance(patient_id, str) or not _PATIENT_RE.match(patient_id):
        raise StoreError(f"patient id {patient_id!r}: use 1-80 letters, digits, '_', '.' or '-' "
                         "(starting with a letter or digit)")
    return patient_id


def _now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProfileStore:
    """Versioned profiles of many patients under one folder (see module doc)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ----- reading --------------------------------------------------------------------------
    def patients(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / HISTORY_FILE).is_file())

    def history(self, patient_id: str) -> list[Version]:
        """Every version of a patient, oldest first (empty for an unknown patient)."""
        path = self.root / check_patient_id(patient_id) / HISTORY_FILE
        if not path.is_file():
            return []
        out = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append(Version.from_json(patient_id, json.loads(line)))
                    except (ValueError, KeyError) as err:
                        raise StoreError(f"{path}:{n}: damaged history line ({err})") from None
        return out

    def latest(self, patient_id: str) -> Version | None:
        hist = self.history(patient_id)
        return hist[-1] if hist else None

    def version(self, patient_id: str, number: int) -> Version:
        for v in self.history(patient_id):
            if v.version == number:
                return v
        known = [v.version for v in self.history(patient_id)]
        raise StoreError(f"patient {patient_id!r} has no version {number}"
                         + (f"; versions: {known[0]}..{known[-1]}" if known else "; nothing stored yet"))

    def load(self, patient_id: str, number: int | None = None) -> Profile:
        """The profile of a version (latest when ``number`` is None), validated again on load."""
        v = self.latest(patient_id) if number is None else self.version(patient_id, number)
        if v is None:
            raise StoreError(f"nothing stored for patient {patient_id!r}")
        path = self.root / patient_id / v.file
        return profile_from_dict(read_profile_data(path), str(path))

    def intact(self, v: Version) -> bool:
        """False when the version's file was changed outside the store."""
        path = self.root / v.patient_id / v.file
        return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == v.sha256

    def resolve(self, ref: str, patient_id: str | None = None) -> tuple[str, Profile]:
        """A version reference → (label, profile): ``N`` (with ``patient_id``), ``PATIENT@N``,
        ``PATIENT`` (latest) or the path of a YAML file."""
        if os.path.sep in ref or ref.endswith((".yaml", ".yml")):
            from fescontrol.core.profile import load_profile
            return ref, load_profile(ref)
        if "@" in ref:
            pid, _, num = ref.rpartition("@")
        elif ref.isdigit():   # a plain version number: of the patient given (or the store's only one)
            if patient_id is None:
                raise StoreError(f"version {ref}: say whose (--patient ID, or PATIENT@{ref})")
            pid, num = patient_id, ref
        else:                 # a patient: the latest version
            pid, num = ref, ""
        if num and not num.isdigit():
            raise StoreError(f"version reference {ref!r}: expected N, PATIENT@N, PATIENT or a YAML file")
        number = int(num) if num else None
        prof = self.load(pid, number)
        label = f"{pid}@{number if number is not None else self.latest(pid).version}"
        return label, prof

    # ----- writing --------------------------------------------------------------------------
    def save(self, profile: Profile | dict, *, by: str, note: str, action: str = "save",
             patient_id: str | None = None, source: str = "<profile>",
             allow_unchanged: bool = False) -> Version:
        """Validate and store a new version; returns it.

        ``profile`` may be a dict (validated here: ProfileError, nothing stored). The patient
        is ``patient_id`` or the profile's own ``patient_id``; when both are given they must
        agree, when only ``patient_id`` is given it is written into the stored profile. An
        unchanged profile is not stored again (StoreError) unless ``allow_unchanged``.
        """
        if not by or not by.strip():
            raise StoreError("who made the change? give a name (--by NAME)")
        if action not in ACTIONS:
            raise StoreError(f"action {action!r}; allowed {', '.join(ACTIONS)}")
        data = profile.model_dump(mode="json") if isinstance(profile, Profile) else dict(profile)
        own = data.get("patient_id")
        pid = patient_id or own
        if pid is None:
            raise StoreError("the profile has no patient_id; give the patient (--patient ID)")
        check_patient_id(pid)
        if own is not None and patient_id is not None and own != patient_id:
            raise StoreError(f"the profile belongs to patient {own!r}, not {patient_id!r}")
        data["patient_id"] = pid
        validated = profile_from_dict(data, source)     # raises ProfileError: nothing written
        folder = self.root / pid
        folder.mkdir(parents=True, exist_ok=True)
        hist_path = folder / HISTORY_FILE
        with open(hist_path, "a+", encoding="utf-8") as hist:
            fcntl.flock(hist, fcntl.LOCK_EX)
            try:
                previous = self.history(pid)
                last = previous[-1] if previous else None
                base = self.load(pid, last.version) if last else None
                changes = tuple(profile_changes(base, validated)) if base is not None else ()
                if base is not None and not changes and not allow_unchanged:
                    raise StoreError(f"no change against {pid}@{last.version}; nothing stored")
                number = (last.version + 1) if last else 1
                file = f"v{number:04d}.yaml"
                at = _now_utc()
                text = (f"# fescontrol profile — patient {pid}, version {number}\n"
                        f"# saved {at} by {by.strip()}: {note.strip() or '(no note)'}\n"
                        f"# NOT A CLEARED MEDICAL DEVICE. Use only under clinical supervision.\n"
                        + profile_to_yaml(validated))
                tmp = folder / f".{file}.tmp"
                with open(tmp, "x", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                target = folder / file
                if target.exists():
                    tmp.unlink()
                    raise StoreError(f"{target} exists but is not in the history; refusing to overwrite")
                os.replace(tmp, target)
                entry = Version(pid, number, file, at, by.strip(), note.strip(), action,
                                last.version if last else None, changes,
                                hashlib.sha256(text.encode("utf-8")).hexdigest())
                hist.seek(0, os.SEEK_END)
                hist.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
                hist.flush()
                os.fsync(hist.fileno())
                return entry
            finally:
                fcntl.flock(hist, fcntl.LOCK_UN)

    def ensure_baseline(self, profile: Profile, *, by: str, source: str,
                        patient_id: str | None = None) -> Version | None:
        """Store ``profile`` as version 1 when the patient has no version yet, so that the
        first change made from it (calibration, live) shows in the history. Returns the new
        version or None when the patient already had versions."""
        pid = patient_id or profile.patient_id
        if pid is None or self.history(check_patient_id(pid)):
            return None
        return self.save(profile, by=by, note=f"starting profile, from {source}", patient_id=pid,
                         source=source)

    def rollback(self, patient_id: str, number: int, *, by: str, note: str = "") -> Version:
        """A new version equal to version ``number`` (history stays append-only)."""
        old = self.load(patient_id, number)
        return self.save(old, by=by, note=note or f"rollback to version {number}", action="rollback",
                         patient_id=patient_id)


def diff_profiles(a: Profile, b: Profile) -> list[Change]:
    """Fields that differ, A → B."""
    return profile_changes(a, b)


def format_changes(changes: list[Change] | tuple[Change, ...]) -> str:
    if not changes:
        return "  (no differences)"
    return "\n".join(f"  {c.path}: {_show(c.old)} -> {_show(c.new)}" for c in changes)


def _show(value: Any) -> str:
    return "(absent)" if value is None else str(value)


def format_history(versions: list[Version], store: ProfileStore | None = None) -> str:
    lines = []
    for v in versions:
        flag = "" if store is None or store.intact(v) else "  !! file changed outside the store"
        based = f" (from v{v.based_on})" if v.based_on else ""
        lines.append(f"{v.label:>16}  {v.at}  {v.action:<11} by {v.by}{based}: {v.note or '(no note)'}{flag}")
        for c in v.changes[:12]:
            lines.append(f"{'':18}{c.path}: {_show(c.old)} -> {_show(c.new)}")
        if len(v.changes) > 12:
            lines.append(f"{'':18}… {len(v.changes) - 12} more")
    return "\n".join(lines) if lines else "(no versions stored)"


__all__ = ["ACTIONS", "HISTORY_FILE", "ProfileStore", "StoreError", "Version", "check_patient_id",
           "diff_profiles", "format_changes", "format_history", "ProfileError"]
