"""``fes sim --patient-model``: a population walks a recording with and without the device.

Each patient of the drawn set walks the recording twice: unassisted (the device runs but
the muscle gets no current: the patient's own drop foot) and stimulated by the profile.
Reported per patient and per stride: foot pitch in swing, toe-drag strides, detection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .closed_loop import PatientRun, closed_loop_replay
from .params import (PatientModelChoice, PatientModelError, PatientParams, PopulationSpec,
                                draw_population, load_population_spec)
from ..scoring import DetectionReport, score


@dataclass
class PatientResult:
    index: int
    params: PatientParams
    unassisted: PatientRun
    stimulated: PatientRun
    report: DetectionReport          # detection of the stimulated walk

    def to_dict(self, pulse_width_us: float) -> dict:
        p = self.params
        return {"patient": self.index, "params": p.model_dump(),
                "threshold_ma": p.threshold_charge_nc / pulse_width_us,
                "saturation_ma": p.saturation_charge_nc / pulse_width_us,
                "toe_drag_strides_unassisted": self.unassisted.toe_drag_strides,
                "toe_drag_strides": self.stimulated.toe_drag_strides,
                "strides": len(self.stimulated.strides),
                "swing_recall": self.report.swing_recall, "swing_precision": self.report.swing_precision,
                "min_fitness_reached": float(self.stimulated.fitness.min()),
                "strides_stimulated": [s.to_dict() for s in self.stimulated.strides],
                "strides_unassisted": [s.to_dict() for s in self.unassisted.strides]}


def run_population(rec, profile, choice: PatientModelChoice, *, implementation: str = "auto"
                   ) -> tuple[PopulationSpec, int, list[PatientResult]]:
    """(spec, seed used, one result per patient) for ``choice`` on ``rec`` with ``profile``."""
    spec = load_population_spec(choice.path)
    seed = spec.seed if choice.seed is None else choice.seed
    patients = draw_population(spec, seed)
    indices = range(len(patients))
    if choice.patient is not None:
        if choice.patient >= len(patients):
            raise PatientModelError(f"--patient-model: patient {choice.patient} is not in population "
                                    f"{spec.name!r} (patients 0..{len(patients) - 1})")
        indices = [choice.patient]
    results = []
    for k in indices:
        off = closed_loop_replay(rec, profile, patients[k], spec.gait, implementation=implementation, stimulate=False)
        on = closed_loop_replay(rec, profile, patients[k], spec.gait, implementation=implementation)
        results.append(PatientResult(k, patients[k], off, on,
                                     score(rec, on.replay.bursts_s, faults=[f.text for f in on.replay.faults])))
    return spec, seed, results


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def format_population(results: list[PatientResult], pulse_width_us: float) -> str:
    """One line per patient: recruitment in mA at the profile's pulse width, toe-drag strides
    unassisted and stimulated, median swing foot pitch (deg), detection recall."""
    lines = ["patient  threshold  saturation  toe-drag strides      swing foot pitch, median (deg)   swing",
             "         mA         mA          unassisted  with FES  min late  mid-swing  heel strike  recall",
             "-" * 96]
    for r in results:
        st = r.stimulated.strides
        lines.append(
            f"{r.index:>7}  {r.params.threshold_charge_nc / pulse_width_us:>9.1f}  "
            f"{r.params.saturation_charge_nc / pulse_width_us:>10.1f}  "
            f"{r.unassisted.toe_drag_strides:>5}/{len(r.unassisted.strides):<5} "
            f"{r.stimulated.toe_drag_strides:>4}/{len(st):<4}  "
            f"{_median([s.min_late_swing_deg for s in st]):>8.1f}  {_median([s.mid_swing_deg for s in st]):>9.1f}  "
            f"{_median([s.heel_strike_deg for s in st]):>11.1f}  {r.report.swing_recall:>6.2f}")
    return "\n".join(lines)


def format_strides(result: PatientResult) -> str:
    """Per stride: foot pitch (deg) unassisted and with FES, toe drop (cm), toe drag."""
    lines = [f"patient {result.index}, per stride (foot pitch to the ground, deg; toe drop below the "
             "recorded path, cm)",
             " stride  toe-off s   unassisted min/mid/HS    drag   with FES min/mid/HS      drop   drag  peak mA",
             "-" * 100]
    for n, (a, b) in enumerate(zip(result.unassisted.strides, result.stimulated.strides)):
        lines.append(f"{n:>7}  {b.toe_off_s:>8.2f}   {a.min_late_swing_deg:>6.1f} {a.mid_swing_deg:>6.1f} "
                     f"{a.heel_strike_deg:>6.1f}   {'yes' if a.toe_drag else 'no':>4}   "
                     f"{b.min_late_swing_deg:>6.1f} {b.mid_swing_deg:>6.1f} {b.heel_strike_deg:>6.1f}   "
                     f"{b.toe_drop_m * 100:>5.1f}   {'yes' if b.toe_drag else 'no':>4}  {b.peak_current_ma:>7.1f}")
    return "\n".join(lines)
