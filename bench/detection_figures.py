"""Figures of the adaptive heel rules for docs/detection.md (docs/detection-rules.png).

(a) a foot whose heel sensor keeps an offset through swing: the tracked floor and the heel-off
    threshold above it, with the bursts delivered with and without the floor;
(b) a weak heel (peaks ~20 N): the heel-strike threshold capped at half the loaded span;
(c) onset error (onset − toe-off) of every gaitpdb foot with and without the learned onset delay;
(d) a heel sensor with a 30 N preload (added to a real walk): the flat swing plateau makes the
    preload the floor, with the bursts delivered with and without the plateau rule.

Usage:  python bench/detection_figures.py [--out docs/detection-rules.png]   (needs ../shared)
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from fescontrol.loop.controller import Controller
from fescontrol.core.profile import load_profile, profile_from_dict
from fescontrol.sim.replay import recording_stream, replay
from fescontrol.sim.run import load_any
from fescontrol.sim.scoring import score
from fescontrol.sim.sources import list_available

ROOT = Path(__file__).resolve().parent.parent


def _variant(profile, **heel):
    data = profile.model_dump(mode="json")
    data["trigger"]["heel"].update(heel)
    return profile_from_dict(data, "figure")


def thresholds(rec, profile, t0_s: float, t1_s: float):
    """Per-sample floor and thresholds of the (pure-Python) kernel over [t0_s, t1_s)."""
    frames, _ = recording_stream(rec)
    c = Controller(profile, implementation="python")
    c.start()
    c.feed(frames[:int(t0_s * rec.rate_hz)].tobytes())
    h = profile.trigger.heel
    out = []
    for f in frames[int(t0_s * rec.rate_hz):int(t1_s * rec.rate_hz)]:
        c.feed(f.tobytes())
        k = c.kernel
        span = max(0.0, k.heel_peak - k.heel_floor)
        off = k.heel_floor + max(h.off_min_n, h.off_fraction * span)
        on = k.heel_floor + max(2 * h.off_min_n, min(max(h.on_min_n, h.on_fraction * span), h.on_max_fraction * span))
        out.append((k.heel_lp, k.heel_floor, off, on))
    return np.array(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "detection-rules.png"))
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    base = load_profile(ROOT / "configs" / "default.yaml")
    fig, axes = plt.subplots(4, 1, figsize=(10, 14.5))
    fixed = _variant(base, floor_max_fraction=0.0, on_max_fraction=0.95, floor_flat_n=0.0)
    preloaded = load_any("physionet:GaCo01", "left")
    preloaded = replace(preloaded, heel_n=preloaded.heel_n + 30.0)
    for ax, (rec, t0, t1, title, other, other_label, ymax) in zip([axes[0], axes[1], axes[3]], [
            (load_any("physionet:GaCo13_10", "right"), 20, 32, "(a) offset through swing: floor-relative heel-off",
             fixed, "fixed thresholds", 120),
            (load_any("physionet:JuPt24_02", "left"), 20, 30, "(b) weak heel: strike threshold ≤ half the loaded span",
             fixed, "fixed thresholds", 120),
            (preloaded, 0, 12, "(d) 30 N sensor preload (added): a flat swing plateau makes it the floor",
             _variant(base, floor_flat_n=0.0), "without the plateau rule", 200)]):
        name, side = rec.name, rec.side
        th = thresholds(rec, base, t0, t1)
        t = t0 + np.arange(len(th)) / rec.rate_hz
        ax.plot(t, th[:, 0], "k", lw=1, label="heel force (filtered), N")
        ax.plot(t, th[:, 1], "g--", lw=1, label="tracked floor")
        ax.plot(t, th[:, 2], "b", lw=1, label="heel-off threshold")
        ax.plot(t, th[:, 3], "r", lw=1, label="heel-strike threshold")
        for prof, y in ((base, -0.06), (other, -0.12)):
            for a, b in replay(rec, prof).bursts_s:
                if b > t0 and a < t1:
                    ax.axvspan(max(a, t0), min(b, t1), ymin=0, ymax=0.04 if y < -0.1 else 0.08,
                               color="orange" if y > -0.1 else "grey", alpha=0.6)
        for to, _hs in rec.reference_swings():
            if t0 < to < t1:
                ax.axvline(to, color="m", lw=0.5)
        ax.set_ylim(0, min(ax.get_ylim()[1], ymax))
        ax.set_title(f"{title} — {name} {side}\n"
                     f"magenta: toe-off; orange: bursts (adaptive), grey: bursts ({other_label})",
                     fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_xlabel("s")
    errs = {}
    names = [n for n in list_available() if n.startswith("physionet:") and "_" not in n.split(":")[1]]
    for label, prof in (("learned onset delay", base), ("onset at heel-off", _variant(base, max_onset_delay_ms=0))):
        e = []
        for n in names:
            for side in ("left", "right"):
                rec = load_any(n, side)
                e += list(score(rec, replay(rec, prof).bursts_s).onset_errors_ms_all)
        errs[label] = np.asarray(e)
    bins = np.arange(-600, 200, 20)
    for label, e in errs.items():
        inwin = np.mean((e >= -300) & (e <= 20))
        axes[2].hist(e, bins=bins, histtype="step", lw=1.5, label=f"{label}: {inwin:.1%} in [−300, +20] ms")
    axes[2].axvspan(-300, 20, color="g", alpha=0.08)
    axes[2].set_title(f"(c) onset − toe-off, first walk of each gaitpdb subject ({len(names)} subjects, both feet)")
    axes[2].set_xlabel("ms")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
