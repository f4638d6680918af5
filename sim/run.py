"""``fes sim``: a simulated walk on a real or synthetic recording, scored against reference events.

Batch mode pushes the recording through the device's controller as fast as it
goes (deterministic; the device's own clock). ``--realtime`` replays it over
real pseudo-terminals into the same loop ``fes run`` uses, with the RehaStim2
driver talking to the emulator, and scores what the emulator delivered.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fescontrol.core.profile import default_profile_for, load_profile
from .faults import FaultError, apply_sensor_faults, parse_fault
from .load import load_any  # the one recording loader (callers of fes sim's import it from here)
from .recording import RecordingError
from .replay import ReplayResult, check_channels, recording_stream, replay
from .scoring import format_table, score


class RecordingLoadError(RecordingError):
    """A recording could not be loaded (missing file, bad format); the message says why."""


def recordings_listing() -> str:
    """What ``fes sim --list-recordings`` prints: bundled, shared and synthetic names."""
    from .sources import ipol_data_dir, list_available, list_bundled, shared_gait_data_dir
    from .synthetic import SCENARIOS
    bundled = list_bundled()
    shared = [n for n in list_available() if n not in bundled]
    lines = ["bundled (sim/data, licences in sim/data/README.md; each has a left and a right foot):"]
    lines += [f"  {n}" for n in bundled]
    folder = shared_gait_data_dir()
    if shared:
        import textwrap
        lines.append(f"shared gait-data folder {folder} (development data, not bundled; licences in its READMEs):")
        lines += textwrap.wrap("  ".join(shared), 100, initial_indent="  ", subsequent_indent="  ",
                               break_on_hyphens=False)
    else:
        lines.append(f"shared gait-data folder {folder}: not present (IPOL and the other PhysioNet walks are "
                     f"read from there when it is; set $FES_GAIT_DATA to point elsewhere)")
    if not ipol_data_dir().is_dir():
        lines.append("  ipol:* — the IPOL healthy-gait set (AGPL) is never bundled; it is read from "
                     f"{ipol_data_dir()} when present")
    lines.append("synthetic (generated, with exact reference events):")
    lines += [f"  synthetic:{n}" for n in SCENARIOS]
    lines.append("or a path to a gaitpdb .txt, gaitmap imu_*.csv or IPOL trial file (.gz allowed)")
    return "\n".join(lines)


def score_recordings(profile, names, *, sides=("left", "right"), implementation: str = "auto",
                     echo: Callable[[str], None] | None = None) -> list:
    """Batch-replay each recording (each foot in ``sides``) with ``profile`` and score it:
    one :class:`~fescontrol.sim.scoring.DetectionReport` per recording and foot. A foot the source
    does not have is skipped (reported through ``echo`` when given)."""
    reports = []
    for name in names:
        for side in sides:
            try:
                rec = load_any(name, side)
            except (ValueError, KeyError) as err:
                if echo:
                    echo(f"  skip {name} {side}: {err}")
                continue
            result = replay(rec, profile, implementation=implementation)
            reports.append(score(rec, result.bursts_s, faults=[f.text for f in result.faults]))
    return reports


def is_scored(rec) -> bool:
    """False for a recording without reference events (a generic CSV without its sidecar):
    it is replayed and reported, but its figures are not scores."""
    return rec.meta.get("reference_events", True) is not False


def sim_report_row(rec, side: str, profile, report, summary: dict, faults) -> dict:
    """The figures of one replayed recording as ``fes sim --json`` writes them (and as
    ``fes evaluate`` lists them per recording): plain JSON types only."""
    data = {**report.to_dict(), "recording": rec.name, "side": side, "profile": profile.name,
            "trigger_mode": profile.trigger.mode.value, "delivered": summary,
            "faults": [f.text for f in faults], "scored": is_scored(rec)}
    for key in ("onset_errors_ms_all", "coverage_all", "after_heel_strike_ms_all", "false_onsets_s"):
        data[key] = list(data.get(key, ()))
    return data


def delivered_summary(result: ReplayResult) -> dict:
    """Figures about what the device did: steps detected, bursts, time on, peak current (the
    event figures from ``result.event_counts``: the same with or without an event log)."""
    tr = result.trace
    dt_s = np.diff(tr["t_us"], append=tr["t_us"][-1:]) / 1e6 if len(tr.get("t_us", [])) else np.zeros(0)
    on = tr["current_ma"] > 0 if len(dt_s) else np.zeros(0, bool)
    counts = result.event_counts
    return {"heel_offs_detected": counts.get("heel_off", 0),
            "heel_strikes_detected": counts.get("heel_strike", 0),
            "bursts_delivered": len(result.bursts_s),
            "stimulation_time_s": float(dt_s[on].sum()) if len(dt_s) else 0.0,
            "peak_current_ma": float(tr["current_ma"].max()) if len(dt_s) else 0.0,
            "max_cutoffs": counts.get("timeout", 0),
            "kernel": result.implementation, **result.counters}


def run_simulation(recording: str, *, side: str = "left", profile_path: str | None = None,
                   faults=(), realtime: bool = False, speed: float = 1.0, rate_hz: float | None = None,
                   json_out: str | None = None,
                   plot_out: str | None = None, window=None, implementation: str = "auto",
                   patient_model: str | None = None, echo: Callable[[str], None] = print) -> int:
    try:
        rec = load_any(recording, side)
    except RecordingError:
        raise
    except (ValueError, OSError) as err:
        text = str(err) if str(err).startswith("recording ") else f"recording {recording!r}: {err}"
        raise RecordingLoadError(text) from None
    if rate_hz:
        rec = rec.resampled(rate_hz)
    profile = load_profile(profile_path or default_profile_for(rec.has_heel, rec.has_imu))
    check_channels(rec, profile)
    specs = [parse_fault(f) for f in faults]
    frames, _ = recording_stream(rec)
    chunks, times_s, unplug_s = apply_sensor_faults(frames, rec.rate_hz, [f for f in specs if f.is_sensor])
    stim_faults = [f for f in specs if not f.is_sensor]
    if stim_faults and not realtime:
        raise FaultError("--fault: stimulator faults (" + ", ".join(f.name for f in stim_faults) +
                         ") need --realtime: they act on the emulator over a pseudo-terminal")
    echo(f"recording {rec.name} ({rec.source}, {side} foot, {rec.rate_hz:g} Hz, "
         f"{rec.duration_s:.1f} s); profile {profile.name!r} (trigger {profile.trigger.mode.value})"
         + (f"; faults: {', '.join(faults)}" if faults else ""))
    population = None
    if patient_model:
        population = _patient_population(rec, profile, patient_model, faults, realtime, implementation, echo)
        result = population[2][0].stimulated.replay
    elif realtime:
        from .realtime import realtime_replay
        result = realtime_replay(rec, profile, chunks, times_s, unplug_s, stim_faults, echo=echo, speed=speed)
    else:
        result = replay(rec, profile, implementation=implementation, stream=b"".join(chunks))
        if unplug_s is not None:
            result = _after_unplug(rec, profile, result, implementation, b"".join(chunks))
    report = score(rec, result.bursts_s, faults=[f.text for f in result.faults])
    summary = delivered_summary(result) if result.trace else {}
    echo("")
    echo(format_table(report, legend=True))
    if not is_scored(rec):
        echo(f"(no reference events: {rec.meta.get('path', rec.name)} has no .events.csv sidecar, "
             "so the walk is replayed and reported but not scored)")
    if summary:
        echo(f"\ndelivered: {summary['bursts_delivered']} bursts, {summary['stimulation_time_s']:.1f} s of "
             f"stimulation, peak {summary['peak_current_ma']:.1f} mA; detected {summary['heel_offs_detected']} "
             f"heel-offs and {summary['heel_strikes_detected']} heel strikes; "
             f"{summary['max_cutoffs']} max-stimulation cut-offs ({summary['kernel']} kernel)")
    for f in result.faults:
        echo(f"FAULT at {f.t_us / 1e6 - result.t0_us / 1e6:.3f} s: {f.text}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        data = sim_report_row(rec, side, profile, report, summary, result.faults)
        if population:
            data["patient_model"] = _population_json(population, profile)
        Path(json_out).write_text(json.dumps(data, indent=2, default=float))
        echo(f"report: {json_out}")
    if plot_out and result.trace:
        from .plot import DEFAULT_WINDOW_S, plot_replay
        Path(plot_out).parent.mkdir(parents=True, exist_ok=True)
        plot_replay(rec, result, plot_out, tuple(window) if window else None)
        echo(f"plot: {plot_out}" + ("" if window else f" ({DEFAULT_WINDOW_S:g} s of {rec.duration_s:.0f} s from the "
                                                      f"first step; --window START END shows another part)"))
    return 1 if result.faults and not faults else 0


def _patient_population(rec, profile, text, faults, realtime, implementation, echo):
    """Walk ``rec`` as the patients ``text`` names (sim/patient/report.py) and print their
    table; the top-level report is then the first patient's stimulated walk."""
    from .patient.params import PatientModelError, parse_patient_model
    from .patient.report import format_population, format_strides, run_population
    if faults or realtime:
        raise PatientModelError("--patient-model runs the batch closed loop: it does not combine with "
                                "--fault or --realtime")
    spec, seed, results = run_population(rec, profile, parse_patient_model(text), implementation=implementation)
    pw = profile.stimulation.pulse_width_us
    echo(f"patient model {spec.name!r} (seed {seed}, {len(results)} patient(s)); pulse width {pw} us, "
         f"{profile.stimulation.frequency_hz:g} Hz")
    echo(format_population(results, pw))
    if len(results) == 1:
        echo("")
        echo(format_strides(results[0]))
    echo(f"\ndetection and delivery below: patient {results[0].index}'s stimulated walk")
    return spec, seed, results


def _population_json(population, profile) -> dict:
    spec, seed, results = population
    return {"name": spec.name, "seed": seed, "gait": spec.gait.model_dump(),
            "pulse_width_us": profile.stimulation.pulse_width_us,
            "frequency_hz": profile.stimulation.frequency_hz,
            "toe_drag_strides": sum(r.stimulated.toe_drag_strides for r in results),
            "toe_drag_strides_unassisted": sum(r.unassisted.toe_drag_strides for r in results),
            "strides": sum(len(r.stimulated.strides) for r in results),
            "patients": [r.to_dict(profile.stimulation.pulse_width_us) for r in results]}


def _after_unplug(rec, profile, result, implementation, stream) -> ReplayResult:
    """Batch replay of an unplugged sensor: the stream ends, then the device's own wall-clock
    staleness check runs on a silent descriptor, exactly as in the real loop."""
    from .replay import build_result, replay_controller
    controller, collector = replay_controller(profile, implementation=implementation)
    controller.start()
    controller.feed(stream)
    read_fd, write_fd = os.pipe()
    try:
        deadline = time.monotonic() + profile.device.stale_ms / 1000 * 3
        while not controller.kernel.fault and time.monotonic() < deadline:
            controller.handle(controller.kernel.run_fd(read_fd, 10_000))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    controller.finish()
    return build_result(controller, collector, counters=result.counters)
