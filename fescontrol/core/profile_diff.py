"""What tells two profiles apart: the fields that differ, and the canonical JSON and hash that
name one profile in the session log and the profile store.

Pure functions of a :class:`~fescontrol.core.profile.Profile` (or its ``model_dump(mode="json")``
dict); nothing is read or written. Used by calibration, the profile store, the live view and
the session log, which therefore need not import each other.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fescontrol.core.profile import Profile


@dataclass(frozen=True)
class Change:
    """One field changed from ``old`` to ``new`` (``path`` dotted, e.g. trigger.heel.debounce_ms)."""

    path: str
    old: Any
    new: Any


def profile_changes(a: Profile | dict, b: Profile | dict) -> list[Change]:
    """Every leaf field that differs between two profiles, in field order."""
    da = a.model_dump(mode="json") if isinstance(a, Profile) else a
    db = b.model_dump(mode="json") if isinstance(b, Profile) else b
    out: list[Change] = []

    def walk(x, y, prefix):
        keys = list(x) + [k for k in y if k not in x] if isinstance(x, dict) and isinstance(y, dict) else None
        if keys is None:
            if x != y:
                out.append(Change(prefix, x, y))
            return
        for k in keys:
            walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
    walk(da, db, "")
    return out


def profile_hash(profile) -> str:
    """SHA-256 (hex) of the profile's canonical JSON: every field, defaults filled in."""
    return hashlib.sha256(profile_json(profile).encode("utf-8")).hexdigest()


def profile_json(profile) -> str:
    return json.dumps(profile.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def patient_key(profile) -> str:
    """Whose remembered intensity this is: the profile's patient_id, else its name."""
    return profile.patient_id or profile.name


# ----- why writing failed ----------------------------------------------------------------------
