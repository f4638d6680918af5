"""Figures of the adaptive heel rules for docs/detection.md (docs/detection-rules.png).

(a) a foot whose heel sensor keeps an offset through swing: the tracked floor and the heel-off
    threshold above it, with the bursts delivered with and without the floor;
(b) a weak heel (peaks ~20 N): the heel-strike threshold capped at half the loaded span;
(c) onset error (onset − toe-off) of every gaitpdb foot with and without the learned onset delay;
(d) a heel sensor with a 30 N preload (added to a real walk): the flat swing plateau makes the
    preload the floor, with the bursts delivered with and without the plateau rule;
(e) a light heel strike (a step whose heel loads ~20 N after 200 N steps): the strike threshold
    at max(on_min_n, on_fraction x span) ends the stride, with the bursts delivered with the
    former 25 % / 20 N threshold;
(f) a light contact (a step that loads the heel a few N): once the burst's heel has been unloaded
    as long as the walker's learned heel-unloaded time, a 6 N rise above its lowest level ends
    the stride, with the bursts delivered without the rule.

docs/detection-tilt-rules.png, the tilt rules of issue 11 on IPOL walks:
(e) the late onset of a first step without a visible push-off;
(f) the raised onset threshold no longer takes the heel-strike slap of a missed step for a
    push-off (bursts with and without the two rules in each panel);
(g) turning in place: the stance yaw rate above late_stance_yaw_dps holds late onsets back, and
    a pivot's toe rise stays under late_pivot_deg;
(i) a turning step out of a pivoting stance: its toes rise past late_pivot_deg, a late onset.

docs/detection-reference.png, the gaitpdb reference checked (issue 11):
(h) an insole that keeps 14-55 N through swing: the fixed 20 N contact threshold calls most of
    its swings stance, the load-relative one (6 % of the foot's stance load) does not.

Usage:  python bench/detection_figures.py [--out docs/detection-rules.png]
        [--tilt-out docs/detection-tilt-rules.png] [--reference-out docs/detection-reference.png]
        (needs ../shared)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from fescontrol.loop.controller import Controller
from fescontrol.core.profile import load_profile, profile_from_dict
from fescontrol.kernel import kernel_class
from fescontrol.sim.replay import recording_stream, replay
from fescontrol.sim.run import load_any
from fescontrol.sim.scoring import score
from fescontrol.sim.sources import list_available

ROOT = Path(__file__).resolve().parent.parent


#: the stride state "in a swing" of the (pure-Python) kernel the figures read
STRIDE_ACTIVE = sys.modules[kernel_class("python").__module__].STRIDE_ACTIVE


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
        # the light-contact strike threshold, where it applies (a burst's heel unloaded for at
        # least the walker's learned heel-unloaded time)
        light = np.nan
        if (h.light_strike_n > 0 and not k.heel_loaded and k.stride == STRIDE_ACTIVE
                and k.heel_strides_learned >= h.learn_strides and k.heel_since_off_us >= k.heel_unload_us):
            light = min(on, k.heel_unloaded_min + h.light_strike_n)
        out.append((k.heel_lp, k.heel_floor, off, on, light))
    return np.array(out)


def tilt_trace(rec, profile, t0_s: float, t1_s: float):
    """Per sample over [t0_s, t1_s) of the (pure-Python) kernel: filtered toe-up rate, the onset
    threshold in use (deg/s, positive), |yaw rate|, the stance's largest |yaw rate| and the toe
    excursion since the disarm after a pivoting stance (deg; NaN when not followed)."""
    frames, _ = recording_stream(rec)
    c = Controller(profile, implementation="python")
    c.start()
    c.feed(frames[:int(t0_s * rec.rate_hz)].tobytes())
    tl = profile.trigger.tilt
    out = []
    for f in frames[int(t0_s * rec.rate_hz):int(t1_s * rec.rate_hz)]:
        c.feed(f.tobytes())
        k = c.kernel
        thr = tl.onset_rate_dps
        if tl.adapt_fraction > 0 and k.tilt_push_learned >= tl.learn_strides:
            thr = min(tl.onset_rate_dps, max(tl.onset_min_dps, tl.adapt_fraction * k.tilt_push_peak))
        if tl.onset_raise_fraction > 0 and k.tilt_push_learned >= tl.learn_strides:
            thr = max(thr, min(tl.onset_max_dps, tl.onset_raise_fraction * k.tilt_push_peak))
        out.append((k.pitch_lp, thr, abs(k.yaw_lp), k.tilt_stance_yaw,
                    k.tilt_late_deg if k.tilt_late == 2 else np.nan))
    return np.array(out)


def tilt_figure(out: str, plt) -> None:
    tilt = load_profile(ROOT / "configs" / "walkaide_tilt.yaml")
    data = tilt.model_dump(mode="json")
    data["trigger"]["tilt"].update(late_onset_dps=0.0, onset_raise_fraction=0.0)
    before = profile_from_dict(data, "figure")
    fig, axes = plt.subplots(4, 1, figsize=(10, 16))
    for ax, (name, side, t0, t1, title) in zip(axes, [
            ("ipol:1-4", "right", 3.5, 8.0, "(e) first step, no visible push-off: a late onset when the toes rise"),
            ("ipol:8-6", "left", 13.8, 17.5, "(f) the heel-strike slap of a missed step is under the raised threshold"),
            ("ipol:5-2", "right", 13.0, 17.5,
             "(g) U-turn: no onset (grey: a pivot's toe-down); the stance pivots, and its toe rises stay "
             "under late_pivot_deg"),
            ("ipol:5-1", "right", 13.5, 17.5,
             "(i) U-turn step out of a pivoting stance: its toes rise past late_pivot_deg, a late onset")]):
        rec = load_any(name, side)
        tr = tilt_trace(rec, tilt, t0, t1)
        t = t0 + np.arange(len(tr)) / rec.rate_hz
        ax.plot(t, tr[:, 0], "k", lw=1, label="toe-up rate (filtered), deg/s")
        ax.plot(t, -tr[:, 1], "b", lw=1, label="onset threshold (−), raised for this walker")
        ax.axhline(tilt.trigger.tilt.late_onset_dps, color="c", lw=1, ls="--", label="late-onset threshold")
        ax.plot(t, tr[:, 3], "g", lw=1, label="stance |yaw rate| max")
        ax.axhline(tilt.trigger.tilt.late_stance_yaw_dps, color="g", lw=0.8, ls=":",
                   label="late_stance_yaw_dps")
        for to, hs in rec.reference_swings():
            if hs > t0 and to < t1:
                ax.axvspan(max(to, t0), min(hs, t1), color="m", alpha=0.08)
        for prof, lo, hi, color in ((tilt, 0.06, 0.12, "orange"), (before, 0.0, 0.06, "grey")):
            for a, b in replay(rec, prof).bursts_s:
                if b > t0 and a < t1:
                    ax.axvspan(max(a, t0), min(b, t1), ymin=lo, ymax=hi, color=color, alpha=0.8)
        ut = rec.meta.get("uturn_boundaries_s")
        for u in ut or ():
            if t0 < u < t1:
                ax.axvline(u, color="r", lw=0.6)
        if np.isfinite(tr[:, 4]).any():
            # the toe excursion after a pivoting stance, scaled x10 onto the rate axis
            ax.plot(t, 10.0 * tr[:, 4], color="purple", lw=1.5, label="toe excursion after a pivot, deg x 10")
            ax.axhline(10.0 * tilt.trigger.tilt.late_pivot_deg, color="purple", lw=0.8, ls=":",
                       label="late_pivot_deg x 10")
        ax.set_xlim(t0, t1)
        ax.set_ylim(-400, 450)
        ax.set_title(f"{title} — {name} {side}\nmagenta: reference swings; red: U-turn; orange: bursts "
                     f"(shipped), grey: bursts (no late onset, threshold not raised)", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


def reference_figure(out: str, plt) -> None:
    """(h): JuPt26_04 left, total force with both contact thresholds, the reference swings
    each gives and the bursts the shipped profile delivered."""
    from fescontrol.sim.sources.physionet import TOTAL_COLUMN, contact_threshold_n, load_physionet, read_physionet
    rec = load_any("physionet:JuPt26_04", "left")
    total = read_physionet(rec.meta["path"])[:, TOTAL_COLUMN["left"]]
    fixed = load_physionet(rec.meta["path"], "left", name=rec.name, load_threshold_n=20.0)
    t0, t1 = 20.0, 32.0
    i0, i1 = int(t0 * rec.rate_hz), int(t1 * rec.rate_hz)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    t = np.arange(i0, i1) / rec.rate_hz
    ax.plot(t, total[i0:i1], "k", lw=1, label="total force of the foot, N")
    ax.plot(t, rec.heel_n[i0:i1], color="0.6", lw=1, label="heel sensor, N")
    ax.axhline(20.0, color="r", lw=1, ls="--", label="fixed 20 N contact threshold")
    ax.axhline(contact_threshold_n(total), color="b", lw=1, ls="--",
               label="load-relative threshold (6 % of the stance load)")
    for r, y, c in ((fixed, 0.92, "r"), (rec, 0.86, "b")):
        for to, hs in r.reference_swings():
            if t0 < to < t1:
                ax.axvspan(to, hs, ymin=y, ymax=y + 0.05, color=c, alpha=0.7)
    for a, b in replay(rec, load_profile(ROOT / "configs" / "default.yaml")).bursts_s:
        if b > t0 and a < t1:
            ax.axvspan(max(a, t0), min(b, t1), ymin=0, ymax=0.05, color="orange", alpha=0.7)
    ax.set_ylim(0, 200)
    ax.set_xlim(t0, t1)
    ax.set_title("(h) JuPt26_04 left: swings under each reference (red bars: fixed 20 N, blue: load-relative);"
                 "\norange: bursts of the shipped heel profile", fontsize=9)
    ax.legend(loc="center right", fontsize=7)
    ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "detection-rules.png"))
    ap.add_argument("--tilt-out", default=str(ROOT / "docs" / "detection-tilt-rules.png"))
    ap.add_argument("--reference-out", default=str(ROOT / "docs" / "detection-reference.png"))
    ap.add_argument("--only-tilt", action="store_true", help="draw only the tilt figure")
    ap.add_argument("--only-reference", action="store_true", help="draw only the reference figure")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    reference_figure(args.reference_out, plt)
    if args.only_reference:
        return 0
    tilt_figure(args.tilt_out, plt)
    if args.only_tilt:
        return 0
    base = load_profile(ROOT / "configs" / "default.yaml")
    fig, axes = plt.subplots(6, 1, figsize=(10, 21.5))
    fixed = _variant(base, floor_max_fraction=0.0, on_max_fraction=0.95, floor_flat_n=0.0)
    preloaded = load_any("physionet:GaCo01", "left")
    preloaded = replace(preloaded, heel_n=preloaded.heel_n + 30.0)
    for ax, (rec, t0, t1, title, other, other_label, ymax) in zip([axes[0], axes[1], axes[3], axes[4], axes[5]], [
            (load_any("physionet:GaCo13_10", "right"), 20, 32, "(a) offset through swing: floor-relative heel-off",
             fixed, "fixed thresholds", 120),
            (load_any("physionet:JuPt24_02", "left"), 20, 30, "(b) weak heel: strike threshold ≤ half the loaded span",
             fixed, "fixed thresholds", 120),
            (preloaded, 0, 12, "(d) 30 N sensor preload (added): a flat swing plateau makes it the floor",
             _variant(base, floor_flat_n=0.0), "without the plateau rule", 200),
            (load_any("physionet:GaCo04", "right"), 100.5, 106.0,
             "(e) light heel strike: strike above max(18 N, 10 % of the loaded span)",
             _variant(base, on_fraction=0.25, on_min_n=20.0, onset_lead_ms=150), "former 25 % / 20 N strike", 250),
            (load_any("physionet:SiPt28", "left"), 59.5, 65.5,
             "(f) light contact: after the learned heel-unloaded time a 6 N rise is the strike",
             _variant(base, light_strike_n=0.0), "without the light contact", 60)]):
        name, side = rec.name, rec.side
        th = thresholds(rec, base, t0, t1)
        t = t0 + np.arange(len(th)) / rec.rate_hz
        ax.plot(t, th[:, 0], "k", lw=1, label="heel force (filtered), N")
        ax.plot(t, th[:, 1], "g--", lw=1, label="tracked floor")
        ax.plot(t, th[:, 2], "b", lw=1, label="heel-off threshold")
        ax.plot(t, th[:, 3], "r", lw=1, label="heel-strike threshold")
        if ax is axes[5]:
            ax.plot(t, th[:, 4], color="c", lw=1.5, label="light-contact strike threshold")
        if ax is axes[4]:
            ax.plot(t, thresholds(rec, other, t0, t1)[:, 3], color="grey", ls="--", lw=1,
                    label=f"heel-strike threshold ({other_label})")
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
