"""Plot foot pitch per stride converging under adaptive stimulation (docs/adaptive.png).

    .venv/bin/python docs/adaptive_plot.py [out.png]

The eight bundled drop-foot patients walk 20 minutes of ipol:1-1's strides with
configs/adaptive.yaml, its target measured on the recording itself (+4°), each from its
motor threshold. Top: the mid-swing foot pitch the device measured, per stride, against the
target band (±2°); middle: the simulated foot's true mid-swing pitch against the walker's
recorded one (toe drag below the dashed line); bottom: the learned amplitude per stride
over the whole walk (it rises as the muscle fatigues; flat with a spike every 60 strides
where the wind-up guard holds near saturation and probes).
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.patient.adaptive import long_walk, reference_target, with_adaptive
from fescontrol.sim.patient.closed_loop import closed_loop_replay
from fescontrol.sim.patient.params import BUNDLED_POPULATIONS, draw_population, load_population_spec
from fescontrol.sim.patient.swing import swings_of
from fescontrol.sim.sources import load_recording

RECORDING = "ipol:1-1"
FIRST = 25          # strides shown in the top panels


def main(out: str = str(Path(__file__).with_name("adaptive.png"))) -> None:
    rec = load_recording(RECORDING, side="left")
    base = load_profile(bundled_profile_path("adaptive"))
    section = base.adaptive.model_dump(mode="json")
    target = reference_target(rec, base, margin_deg=4.0)
    spec = load_population_spec(BUNDLED_POPULATIONS["drop-foot"])
    walk = long_walk(rec, 20.0)
    recorded_mid = float(np.median([s.recorded_pitch_deg[s.mid()] for s in swings_of(rec)]))
    fig, axes = plt.subplots(3, 1, figsize=(8, 9.5))
    strides = np.arange(1, FIRST + 1)
    ax = axes[0]
    ax.axhspan(target["mid_swing_deg"] - 2, target["mid_swing_deg"] + 2, color="0.85", label="target ±2°")
    for k, p in enumerate(draw_population(spec)):
        lo = float(np.floor(p.threshold_charge_nc / base.stimulation.pulse_width_us))
        prof = with_adaptive(base, {**section, "target": target}, amplitude_min_ma=lo, amplitude_max_ma=40.0)
        run = closed_loop_replay(walk, prof, p, spec.gait)
        recs = run.meta["adaptive"]
        colour = f"C{k}"
        ax.plot(strides, [r.mid_swing_deg for r in recs[:FIRST]], "o-", ms=3, color=colour, label=f"patient {k}")
        axes[1].plot(strides, [s.mid_swing_deg for s in run.strides[:FIRST]], "o-", ms=3, color=colour)
        axes[2].plot(np.arange(1, len(recs) + 1), [r.amplitude_ma for r in recs], color=colour, lw=1)
    ax.set_ylabel("mid-swing pitch, device (deg)")
    ax.set_title(f"adaptive stimulation from the motor threshold ({RECORDING} strides, configs/adaptive.yaml)")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    axes[1].axhline(recorded_mid, color="k", lw=2, label="recorded (unimpaired), median")
    axes[1].axhline(recorded_mid - 4.5, color="k", ls="--", lw=1, label="≈ toe-drag line (−1.3 cm toe clearance)")
    axes[1].set_ylabel("mid-swing pitch, simulated foot (deg)")
    axes[1].legend(fontsize=7, loc="lower right")
    for a in axes[:2]:
        a.set_xlabel("stride")
        a.grid(alpha=0.3)
    axes[2].set_xlabel("stride (20-minute walk)")
    axes[2].set_ylabel("learned plateau (mA)")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
