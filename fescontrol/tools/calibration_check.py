"""Calibration checked out of sample: the proposal scored on another walk of the same walker.

A calibration fitted on one walk can fit that walk's accidents (a stumble, a turn) instead of
the walker. Before it is accepted, :func:`check_out_of_sample` replays the current and the
proposed profile on a *different* walk of the same person (same foot) and scores both with
the objective the calibration used (reference events when that walk has them, else the gait
structure; :mod:`fescontrol.tools.calibration`). A proposal that scores lower there is *worse
out of sample*: ``fes calibrate --check-on WALK`` says so before it asks, and refuses to store
it with ``--yes`` unless ``--accept-worse`` is given too.

Raises :class:`~fescontrol.tools.calibration.CalibrationError` when the other walk has no
walking or lacks the channels the profile needs.
"""
from __future__ import annotations

from dataclasses import dataclass

from fescontrol.tools.calibration import (Calibrator, WalkFigures, _walk_figures, format_figures, gait_structure,
                                          has_reference)


@dataclass(frozen=True)
class OutOfSample:
    """The current (``before``) and the proposed (``after``) profile on another walk."""

    walk: str
    side: str
    kind: str                 # "reference" or "structure": the objective both are scored with
    before: WalkFigures
    after: WalkFigures

    @property
    def worse(self) -> bool:
        """The proposal scores lower than the current profile on this walk (ties are not worse)."""
        return self.after.objective < self.before.objective

    def summary(self) -> str:
        verdict = ("WORSE out of sample: the proposal scores lower than the current profile on this walk"
                   if self.worse else "not worse out of sample")
        return (f"out of sample on {self.walk} ({self.side} foot), objective {self.kind}: "
                f"{self.before.objective:.3f} -> {self.after.objective:.3f}: {verdict}\n"
                + format_figures(self.before, self.after))


def check_out_of_sample(cal: Calibrator, recording, *, implementation: str = "auto") -> OutOfSample:
    """Score ``cal``'s current and proposed profiles on ``recording`` (another walk, same foot).

    The objective is the calibration's own kind; a "reference" calibration is checked on the
    structure when the other walk has no reference events (both profiles alike).
    """
    from fescontrol.sim.replay import check_channels, recording_stream, replay
    if not hasattr(cal, "proposed_"):
        raise ValueError("check_out_of_sample needs a fitted Calibrator (call fit first)")
    check_channels(recording, cal.profile)
    kind = cal.objective_
    if kind == "reference" and not has_reference(recording):
        kind = "structure"
    structure = gait_structure(recording, cal.profile.trigger.mode)     # raises when it finds no walking
    frames, _ = recording_stream(recording)
    stream = frames.tobytes()
    figures = []
    for prof in (cal.profile, cal.proposed_):
        result = replay(recording, prof, implementation=implementation, stream=stream)
        figures.append(_walk_figures(recording, result, structure, kind))
    return OutOfSample(recording.name, recording.side, kind, figures[0], figures[1])


__all__ = ["OutOfSample", "check_out_of_sample"]
