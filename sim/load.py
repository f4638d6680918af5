"""The one recording loader: what ``fes sim --recording``, ``fes calibrate --recording``,
``fes walk --sim``, ``fessim://RECORDING``, evaluations and sweeps accept.

:func:`load_any` takes

* raw sensor frames (``*.fesraw``: the wire frames of docs/protocol.md, as
  ``fes calibrate --save-walk`` keeps them): :func:`fescontrol.sim.sources.frames.recording_from_frames`;
* ``synthetic:<scenario>`` (:data:`fescontrol.sim.synthetic.SCENARIOS`);
* a bundled or short name (``physionet:GaCo01``) or a file path of any format
  :func:`fescontrol.sim.sources.load_recording` reads (gaitpdb, gaitmap, IPOL, the generic CSV).

With ``cache=True`` a recording is kept per process (a sweep replays each one once per
parameter block), keyed by path, foot, size and modification time, at most :data:`CACHE_MAX`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .recording import Recording, RecordingError

#: the file ending of raw sensor frames (``fes calibrate --save-walk``)
RAW_FRAMES_SUFFIX = ".fesraw"
#: recordings :func:`load_any` keeps per process with ``cache=True`` (oldest dropped first)
CACHE_MAX = 600
_CACHE: dict = {}


def load_any(recording: str | Path, side: str | None = None, *, cache: bool = False) -> Recording:
    """One foot of ``recording`` (see the module doc for what it may be).

    ``side`` "left"/"right"; None: a file's own foot, else left. Raises
    :class:`~fescontrol.sim.recording.RecordingError` (a file that is not a recording, too few
    frames, an unknown synthetic scenario) or FileNotFoundError (no such name or file), each
    naming the recording and what is accepted.
    """
    if not cache:
        return _load(recording, side)
    key = _cache_key(recording, side)
    rec = _CACHE.get(key)
    if rec is None:
        rec = _load(recording, side)
        if len(_CACHE) >= CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = rec
    return rec


def _cache_key(recording, side) -> tuple:
    try:
        st = os.stat(recording)
        return (os.path.abspath(recording), side, st.st_size, st.st_mtime_ns)
    except (OSError, ValueError):
        return (str(recording), side)


def _load(recording, side: str | None) -> Recording:
    text = str(recording)
    try:
        if text.endswith(RAW_FRAMES_SUFFIX):
            from .sources.frames import recording_from_frames
            path = Path(text)
            return recording_from_frames(path.read_bytes(), name=path.stem, side=side or "left")
        if text.startswith("synthetic:"):
            from .synthetic import SCENARIOS, named_scenario
            name = text.split(":", 1)[1]
            if name not in SCENARIOS:
                raise RecordingError(f"recording {text!r}: unknown synthetic scenario; known: "
                                     + ", ".join(f"synthetic:{n}" for n in SCENARIOS))
            return named_scenario(name, side=side or "left")
        from .sources import load_recording
        return load_recording(recording, side=side)
    except RecordingError:
        raise
    except (ValueError, IndexError, EOFError, UnicodeDecodeError) as err:
        # a loader found a file it cannot read as its format (wrong columns, text in numbers, ...)
        raise RecordingError(f"recording {text!r}: {err}") from None
