"""The ``fes`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fescontrol import DISCLAIMER, __version__
from fescontrol.cli.errors import FesGroup
from fescontrol.cli.types import DURATION, RATE_HZ, SENSOR_BAUD_OPTION, FiniteFloat, speed_type
from fescontrol.core import limits
from fescontrol.kernel import COMPILED, DEFAULT_IMPLEMENTATION
from fescontrol.core.profile import (Profile, ProfileError, bundled_profile_path, load_profile,
                      profile_to_yaml)


def _version_text() -> str:
    kernel = "compiled Cython kernel" if DEFAULT_IMPLEMENTATION == "cython" else (
        "pure-Python kernel" + ("" if COMPILED else " (Cython extension not built)"))
    return f"fes {__version__} — {kernel} active\n{DISCLAIMER}"


@click.group(cls=FesGroup, help=f"fescontrol: drop-foot functional electrical stimulation.\n\n{DISCLAIMER}",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=_version_text())
def main() -> None:
    # the composition root: the simulated sensor URL (fessim://) is known wherever a port goes
    from fescontrol.sim.urlhandler import register
    register()
    _recording_warnings_as_one_line()


def _recording_warnings_as_one_line() -> None:
    """A recording's warnings (e.g. unknown CSV columns ignored, docs/recordings.md) print as
    one ``warning: …`` line, not as Python's ``file:line: RecordingWarning`` and a source
    line; other warnings as before. Idempotent."""
    import warnings
    shown = warnings.showwarning
    if getattr(shown, "_fes_recording_lines", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        mod = sys.modules.get("fescontrol.sim.sources.csv_recording")
        if mod is not None and issubclass(category, mod.RecordingWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show._fes_recording_lines = True
    warnings.showwarning = show


def _load(path: str | None, fallback: str = "default") -> Profile:
    try:
        return load_profile(path or bundled_profile_path(fallback))
    except ProfileError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


# ----- config ---------------------------------------------------------------------------
@main.group()
def config() -> None:
    """Check profiles and print their schema."""


@config.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def config_check(files: tuple[str, ...]) -> None:
    """Validate profile FILES; print 'ok' and a summary, or every problem."""
    failed = False
    for file in files:
        try:
            p = load_profile(file)
        except ProfileError as err:
            click.echo(str(err), err=True)
            failed = True
            continue
        s, e, t = p.stimulation, p.envelope, p.trigger
        click.echo(f"{file}: ok — {p.name} ({p.side} leg): {s.amplitude_ma:g} mA, {s.pulse_width_us} µs, "
                   f"{s.frequency_hz:g} Hz, {s.waveform.value}; ramps {e.ramp_up_ms}/{e.ramp_down_ms} ms, "
                   f"extension {e.extension_ms} ms, max {e.max_stim_ms} ms ({e.cutoff.value}); "
                   f"trigger {t.mode.value}; patient {p.patient.amplitude_min_ma:g}–"
                   f"{p.patient.amplitude_max_ma:g} mA in {p.patient.step_ma:g} mA steps")
        for c in p.extra_channels:
            when = ("follows the gait envelope" if c.timing is None else
                    f"{c.timing.onset_ms} ms after {c.timing.after.value} for {c.timing.duration_ms} ms "
                    f"(ramps {c.timing.ramp_up_ms}/{c.timing.ramp_down_ms} ms)")
            click.echo(f"  channel {c.channel}{' (' + c.muscle + ')' if c.muscle else ''}: {c.amplitude_ma:g} mA, "
                       f"{c.pulse_width_us} µs, {when}; patient {c.patient.amplitude_min_ma:g}–"
                       f"{c.patient.amplitude_max_ma:g} mA in {c.patient.step_ma:g} mA steps")
        if p.extra_channels:
            click.echo(f"  channels {', '.join(map(str, p.channel_numbers))} at {s.frequency_hz:g} Hz: "
                       f"{p.total_charge_rate_uc_per_s:g} µC/s at their plateaus (cap "
                       f"{limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:g}); patient +/- {p.patient.adjust.replace('_', ' ')}")
    sys.exit(1 if failed else 0)


@config.command("schema")
def config_schema() -> None:
    """Print the profile JSON Schema (for editors)."""
    click.echo(json.dumps(Profile.model_json_schema(), indent=2, ensure_ascii=False))


@config.command("show")
@click.argument("name_or_file", default="default")
def config_show(name_or_file: str) -> None:
    """Print a profile (bundled name or file) with every default filled in."""
    path = name_or_file if Path(name_or_file).exists() else None
    click.echo(profile_to_yaml(_load(path, name_or_file)), nl=False)


# ----- diagram ------------------------------------------------------------------------------
@main.command()
@click.argument("out", required=False, type=click.Path(dir_okay=False, writable=True))
def diagram(out: str | None) -> None:
    """Draw the gait state machine into OUT (.png/.svg/... via graphviz when present, else DOT
    text next to it); without OUT, print the DOT text."""
    from fescontrol.machine.gait import write_diagram
    if out:
        folder = Path(out).parent
        if not folder.is_dir():
            raise click.BadParameter(f"folder {str(folder)!r} does not exist; create it first or give a "
                                     f"path in an existing folder", param_hint="OUT")
        if "." not in Path(out).name:
            raise click.BadParameter(f"{out!r} has no suffix; give e.g. diagram.png, .svg or .dot",
                                     param_hint="OUT")
    click.echo(write_diagram(out))


# ----- run ----------------------------------------------------------------------------------
@main.command()
@click.option("--sensor", required=True, help="sensor port: device path, pty or pyserial URL, e.g. "
              "fessim://physionet:GaCo01?side=left&speed=1 for a recorded walk")
@click.option("--stim", required=True,
              help="stimulator port for the profile's backend, BACKEND:PORT (backends: rehastim2, p24), "
                   "or a backend that brings its own device: 'emulator' / 'p24-emulator' for the "
                   "RehaStim2 / P24 emulator on a pseudo-terminal")
@click.option("--profile", "profile_path", type=click.Path(exists=True), help="profile YAML (default: bundled)")
@click.option("--duration", type=DURATION, help="stop after this many seconds")
@click.option("--allow-pure-python", is_flag=True, help="run even without the compiled kernel")
@SENSOR_BAUD_OPTION
@click.option("--rt", is_flag=True, help="real-time hardening from the profile's device.realtime section "
              "(mlockall, SCHED_FIFO, CPU affinity, frozen gc; docs/realtime.md)")
def run(sensor: str, stim: str, profile_path: str | None, duration: float | None,
        allow_pure_python: bool, sensor_baud: int, rt: bool) -> None:
    """Run the device: sensor in, supervised stimulation out. Ctrl-C or SIGTERM stops
    stimulation first (zero current, then Stop), then exits."""
    from fescontrol.loop.runner import run_device
    profile = _load(profile_path)
    if DEFAULT_IMPLEMENTATION != "cython" and not allow_pure_python:
        click.echo("refusing to run on the pure-Python kernel (the Cython extension is not built); "
                   "run `make install`, or pass --allow-pure-python for testing", err=True)
        sys.exit(2)
    sys.exit(run_device(profile, sensor, stim, duration_s=duration, sensor_baud=sensor_baud,
                        echo=click.echo, realtime=rt))


# ----- sim ----------------------------------------------------------------------------------
def _list_faults(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from fescontrol.sim.faults import fault_table
    click.echo(fault_table())
    ctx.exit(0)


def _list_recordings(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from fescontrol.sim.run import recordings_listing
    click.echo(recordings_listing())
    ctx.exit(0)


def _check_window(_ctx, _param, value):
    if value and not value[0] < value[1]:
        raise click.BadParameter(f"start {value[0]:g} s must be before end {value[1]:g} s, e.g. --window 10 18")
    return value


@main.command("sim", epilog="Recordings, sources, faults, --realtime and the JSON keys: docs/simulator.md.")
@click.option("--recording", required=True,
              help="bundled name (see --list-recordings), synthetic:NAME, a recording file path or *.fesraw frames")
@click.option("--list-recordings", is_flag=True, is_eager=True, expose_value=False, callback=_list_recordings,
              help="list the recording names available here, then exit")
@click.option("--list-faults", is_flag=True, is_eager=True, expose_value=False, callback=_list_faults,
              help="list the faults --fault can inject, then exit")
@click.option("--side", type=click.Choice(["left", "right"]), default="left", show_default=True)
@click.option("--profile", "profile_path", type=click.Path(exists=True),
              help="profile YAML (default: the bundled default for the recording's channels)")
@click.option("--fault", "faults", multiple=True, metavar="NAME@T[:N]",
              help="inject a fault at T s, e.g. unplug@30 (see --list-faults); repeatable")
@click.option("--realtime", is_flag=True, help="replay over pseudo-terminals into the real device loop, "
              "with the RehaStim2 driver and emulator")
@click.option("--speed", type=speed_type(allow_zero=True), default=1.0, show_default=True,
              help="with --realtime: replay speed (2 = twice as fast, 0 = as fast as the loop reads)")
@click.option("--rate", "rate_hz", type=RATE_HZ, help="resample the recording to this rate (Hz) first")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the report as JSON")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False),
              help="write a PNG of signals, events and envelope (8 s from the first step unless --window)")
@click.option("--window", nargs=2, type=FiniteFloat(0.0), callback=_check_window, metavar="START END",
              help="plot window, seconds from the start of the recording")
@click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto")
@click.option("--patient-model", help="walk as simulated patients whose foot responds to the "
              "stimulation: drop-foot[:seed=N][:patient=K] (docs/patient-model.md)")
def sim_command(recording: str, side: str, profile_path: str | None, faults: tuple[str, ...],
                realtime: bool, speed: float, rate_hz: float | None, json_out: str | None,
                plot_out: str | None, window, kernel: str, patient_model: str | None) -> None:
    """Simulated walk: replay a real (or synthetic) recording through the device and score it."""
    from fescontrol.sim.run import run_simulation
    if speed != 1.0 and not realtime:
        raise click.BadParameter("works only with --realtime (the batch replay runs as fast as it goes)",
                                 param_hint="--speed")
    sys.exit(run_simulation(recording, side=side, profile_path=profile_path, faults=faults,
                            realtime=realtime, speed=speed, rate_hz=rate_hz, json_out=json_out,
                            plot_out=plot_out, window=window, implementation=kernel,
                            patient_model=patient_model, echo=click.echo))


#: emulated stimulators: name -> module with a ``main(argv)`` taking ``--pty``
EMULATORS = {"rehastim2": "fescontrol.sim.rehastim2", "p24": "fescontrol.sim.p24"}


@main.command("emulator")
@click.argument("device", type=click.Choice(sorted(EMULATORS)), default="rehastim2")
@click.option("--pty", "use_pty", is_flag=True, default=True,
              help="on a pseudo-terminal (the only mode, so also the default)")
def emulator(device: str, use_pty: bool) -> None:
    """Start a stimulator emulator (DEVICE: rehastim2, the default, or p24) on a
    pseudo-terminal and print its port. Ctrl-C or SIGTERM ends it and prints every pulse
    train it delivered."""
    import importlib
    sys.exit(importlib.import_module(EMULATORS[device]).main(["--pty"]))


def _register_plugins() -> None:
    """Command groups that live in their own modules (patient and orthotist workflows)."""
    import importlib
    for module in ("fescontrol.cli.patient", "fescontrol.cli.orthotist", "fescontrol.cli.evaluate"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        mod.register(main)


_register_plugins()
