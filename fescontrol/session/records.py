"""What a patient session records: one frozen dataclass per kind of entry, and the patient's
:class:`Mode`. :mod:`fescontrol.session.modes` makes them, the log writer
(:mod:`fescontrol.session.log`) stores them; neither needs the other to know their shape.

Times: ``t_us`` sensor time (µs), ``wall_s`` wall-clock seconds (``time.time()``), ``frame``
the count of sensor frames before the entry took effect; currents in mA.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from fescontrol.core.codes import FAULT_TEXT, Fault


class Mode(str, enum.Enum):
    """What the patient sees as the mode; derived from the machine state."""

    STANDBY = "standby"
    WALK = "walk"
    PAUSED = "paused"
    TRAINING = "training"
    TEST = "test"
    FAULT = "fault"


@dataclass(frozen=True)
class CommandRecord:
    """A command as it took effect: after ``frame`` sensor frames (sensor time ``t_us``)."""

    name: str
    frame: int
    t_us: int
    wall_s: float
    value: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class ModeChange:
    mode: Mode
    previous: Mode
    state: str
    cause: str
    frame: int
    t_us: int
    wall_s: float


@dataclass(frozen=True)
class IntensityChange:
    level_ma: float
    previous_ma: float
    cause: str  # up | down | restored | set
    frame: int
    t_us: int
    wall_s: float


@dataclass(frozen=True)
class BurstRecord:
    """One stimulation burst: a walking step, a training contraction or a test burst."""

    kind: str
    number: int
    onset_us: int
    end_us: int
    peak_ma: float
    events: tuple[str, ...]
    wall_s: float
    heel_off_us: int | None = None
    heel_strike_us: int | None = None
    cut_off: bool = False
    complete: bool = True

    @property
    def duration_ms(self) -> float:
        return (self.end_us - self.onset_us) / 1000.0


@dataclass(frozen=True)
class FaultEntry:
    code: Fault
    detail: str
    frame: int
    t_us: int
    wall_s: float
    external: bool

    @property
    def text(self) -> str:
        return FAULT_TEXT.get(self.code, self.code.name.lower()) + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class FaultCleared:
    person: str
    note: str
    frame: int
    t_us: int
    wall_s: float


@dataclass(frozen=True)
class Note:
    name: str
    text: str
    frame: int
    t_us: int
    wall_s: float


@dataclass(frozen=True)
class RawBytes:
    """A batch of raw sensor bytes, in the order the kernel read them."""
    batch: int
    data: bytes


@dataclass(frozen=True)
class SampleBatch:
    first: int
    t_us: np.ndarray
    current_ma: np.ndarray
