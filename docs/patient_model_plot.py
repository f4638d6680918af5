"""Plot foot pitch through swing with and without stimulation (docs/patient-model.png).

    .venv/bin/python docs/patient_model_plot.py [out.png]

Every patient of the bundled drop-foot set walks the bundled gaitmap recording unassisted
and with the walkaide-tilt profile; the curves are the mean over strides, per patient,
against the normalised swing time, with the recorded (unimpaired) foot pitch for reference.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.patient.closed_loop import closed_loop_replay
from fescontrol.sim.patient.params import BUNDLED_POPULATIONS, draw_population, load_population_spec
from fescontrol.sim.patient.swing import swings_of
from fescontrol.sim.sources import load_recording

GRID = np.linspace(0.0, 1.0, 101)


def mean_swing(pitch_by_swing) -> np.ndarray:
    return np.mean([np.interp(GRID, np.linspace(0, 1, len(p)), p) for p in pitch_by_swing], axis=0)


def main(out: str = str(Path(__file__).with_name("patient-model.png"))) -> None:
    rec = load_recording("gaitmap:imu_sample", side="left")
    profile = load_profile(bundled_profile_path("walkaide_tilt"))
    spec = load_population_spec(BUNDLED_POPULATIONS["drop-foot"])
    swings = swings_of(rec)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(GRID * 100, mean_swing([s.recorded_pitch_deg for s in swings]), "k", lw=2.5, label="recorded (unimpaired)")
    for k, p in enumerate(draw_population(spec)):
        for stimulate, colour in ((False, "tab:red"), (True, "tab:blue")):
            run = closed_loop_replay(rec, profile, p, spec.gait, stimulate=stimulate)
            curve = mean_swing([run.foot_pitch_deg[s.start:s.stop + 1] for s in swings])
            label = None if k else ("with FES (walkaide-tilt, 35 mA)" if stimulate else "no stimulation")
            ax.plot(GRID * 100, curve, color=colour, lw=1, alpha=0.8, label=label)
    ax.axvline(50, color="0.6", ls=":")
    ax.set_xlabel("swing (% from toe-off to heel strike)")
    ax.set_ylabel("foot pitch to the ground (deg, toe up +)")
    ax.set_title(f"Drop-foot patients (seed {spec.seed}, n={spec.n_patients}) on gaitmap:imu_sample, mean per patient")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
