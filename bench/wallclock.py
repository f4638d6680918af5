"""Wall-clock safety figures (issue 16), over real ptys with the RehaStim2 emulator:
the longest burst under a slow sensor clock (drift check off and on) and the time from a
stimulator going silent mid-plateau to the latched fault. Uses the test rig of
tests/test_wallclock.py. Run: ``.venv/bin/python -m bench.wallclock``.
"""
import time

import numpy as np

from tests.conftest import profile_with
from tests.test_wallclock import MAX_STIM_MS, PERIOD_S, Rig, backstop_profile, heel_frames


def silence_after(plateau_s: float, silenced: list[float]):
    """A ``during`` hook: stop the emulator's acknowledgements ``plateau_s`` into the plateau."""
    def during(rig):
        em = rig.emulator
        if not silenced and em.stimulating and em.segments[-1].current_ma == 30 \
                and time.monotonic() - em.segments[-1].t_start_s > plateau_s:
            em.ack_enabled = False
            silenced.append(time.monotonic())
    return during


frames = heel_frames(0.6, 6.0, 0.3, clock_rate=0.2)
for rate in (0.0, 1.0):
    rig = Rig(backstop_profile(), frames, np.arange(len(frames)) * PERIOD_S, clock_rate=rate).run()
    f = rig.controller.supervisor.fault
    longest_ms = max([b - a for a, b in rig.bursts], default=0) * 1000
    print(f"slow clock (x0.2), drift check {'on' if rate else 'off'}: longest burst {longest_ms:.1f} ms "
          f"(max_stim {MAX_STIM_MS} ms), fault {f.reason.name if f else None}")
lat = []
for i in range(3):
    profile = profile_with("default", envelope={"max_stim_ms": 3000, "ramp_up_ms": 50, "ramp_down_ms": 100},
                           device={"keepalive_ms": 200, "ack_timeout_ms": 50})
    fr = heel_frames(0.6, 2.5, 0.3)
    sil: list[float] = []
    rig = Rig(profile, fr, np.arange(len(fr)) * PERIOD_S).run(during=silence_after(0.3 + 0.05 * i, sil))
    lat.append((rig.controller.supervisor.fault.monotonic_s - sil[0]) * 1000)
print("silent stimulator -> fault (ms), bound keepalive 200 + ack 50 = 250:", [round(x, 1) for x in lat])
