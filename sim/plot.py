"""A picture of a replay: signals, detected and reference events, delivered envelope."""
from __future__ import annotations

import numpy as np

#: Length of the default plot window (s): about six strides, readable at a glance.
DEFAULT_WINDOW_S = 8.0


def window_caption(window_s: tuple[float, float], duration_s: float, default: bool) -> str:
    """What the plot's title says about the time shown, e.g. "8 s of 121 s (12–20 s)"."""
    a, b = window_s
    text = f"{b - a:.3g} s of {duration_s:.0f} s shown ({a:.1f}–{b:.1f} s)"
    return text + ("; --window START END shows another part" if default else "")


def plot_replay(recording, result, path: str, window_s: tuple[float, float] | None = None,
                title: str = "") -> str:
    """Write a PNG with heel force, toe-up rotation rate and the delivered current over a window.

    Reference swings (toe-off → heel strike) are shaded; detected heel-off and heel strike
    are marked on the current panel. Without ``window_s`` the window is
    :data:`DEFAULT_WINDOW_S` from one second before the first reference swing; the title
    always says which part of how long a recording is shown. Returns the path written.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = result.trace
    t = trace["t_us"] / 1e6 - result.t0_us / 1e6
    default_window = window_s is None
    if window_s is None:
        swings = recording.reference_swings()
        start = max(0.0, (swings[0][0] - 1.0) if len(swings) else 0.0)
        window_s = (start, min(start + DEFAULT_WINDOW_S, max(recording.duration_s, start + 1.0)))
    a, b = window_s
    sel = (t >= a) & (t <= b)
    panels = [("heel force (N)", trace["heel_n"], recording.has_heel),
              ("toe-up rate (deg/s)", trace["pitch_rate_dps"], recording.has_imu)]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 2.3 * (len(panels) + 1)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax in axes:
        for to, hs in recording.reference_swings():
            if hs >= a and to <= b:
                ax.axvspan(to, hs, color="tab:green", alpha=0.12, lw=0)
    for ax, (label, values, _) in zip(axes, panels):
        ax.plot(t[sel], values[sel], lw=1, color="tab:blue")
        ax.set_ylabel(label)
    ax = axes[-1]
    ax.plot(t[sel], trace["current_ma"][sel], lw=1.4, color="tab:red", label="delivered current")
    for event, marker, color in (("heel_off", "^", "tab:orange"), ("heel_strike", "v", "tab:purple")):
        times = [e.t_us / 1e6 - result.t0_us / 1e6 for e in result.events if e.event == event]
        times = [x for x in times if a <= x <= b]
        ax.plot(times, np.zeros(len(times)), marker, color=color, ls="none", label=f"detected {event}")
    ax.set_ylabel("current (mA)")
    ax.set_xlabel("time (s); shaded: reference swing (toe-off → heel strike)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(a, b)
    fig.suptitle((title or f"{recording.name} ({recording.side})") + " — "
                 + window_caption((a, b), recording.duration_s, default_window), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
