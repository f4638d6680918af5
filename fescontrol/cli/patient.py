"""Patient commands of ``fes``: walk, train, test-burst, log, replay.

``fes walk``/``fes train`` open the patient screen (plain keys, see docs/patient.md) on the
real sensor and stimulator (``--sensor PORT --stim PORT|emulator``, as ``fes run``) or on
the simulator (``--sim RECORDING``: the recording replayed over a pseudo-terminal at
real-time speed into the same loop, with the RehaStim2 emulator). Every session goes to
the session database: ``--db PATH``, else ``$FES_DB``, else
``~/.local/share/fescontrol/sessions.db``.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path

import click

from fescontrol.cli.types import DURATION, SENSOR_BAUD_OPTION, speed_type
from fescontrol.session.log import DB_ENV, SessionLog, SessionLogError, default_db_path

EXIT_OK, EXIT_FAULT, EXIT_USAGE = 0, 1, 2
TEST_BURST_MS_MAX = 3000  # = fescontrol.core.limits.TEST_BURST_MS_MAX (checked by a test; limits is not imported
#                           here so that the help stays fast)


def _db_option(f):
    return click.option("--db", "db_path", type=click.Path(dir_okay=False),
                        help=f"session database (default: ${DB_ENV}, else ~/.local/share/fescontrol/sessions.db)")(f)


def _db(db_path: str | None) -> Path:
    return Path(db_path).expanduser() if db_path else default_db_path()


def _session_options(f):
    opts = [
        click.option("--sensor", help="sensor port: device path, pty or pyserial URL"),
        click.option("--stim", help="stimulator port for the profile's backend, BACKEND:PORT, or a backend that "
                     "brings its own device ('emulator', 'p24-emulator'; with --sim the default is 'emulator')"),
        click.option("--profile", "profile_path", type=click.Path(exists=True, dir_okay=False),
                     help="profile YAML (default: bundled default; with --sim, the one matching the recording)"),
        click.option("--sim", "sim_recording", metavar="RECORDING",
                     help="simulator: replay RECORDING (e.g. physionet:GaCo01) over a pty in real time, "
                          "RehaStim2 emulator as stimulator"),
        click.option("--side", type=click.Choice(["left", "right"]), default="left", show_default=True,
                     help="--sim: which foot of the recording"),
        click.option("--speed", type=speed_type(allow_zero=False), default=1.0, show_default=True,
                     help="--sim: replay speed (1 = real time; 0 < speed ≤ 100)"),
        click.option("--fault", "faults", multiple=True, metavar="NAME@T",
                     help="--sim: inject a fault (as fes sim), e.g. stim-error@20, unplug@30, stuck-heel@10"),
        click.option("--duration", type=DURATION, help="end after this many seconds (--sim: of the recording)"),
        _db_option,
        click.option("--log-frames", is_flag=True, help="also log raw sensor bytes and per-sample output "
                                                         "(makes the session replayable; ~25 MB per hour)"),
        click.option("--no-ui", is_flag=True, help="no screen: one line per change (also when not on a terminal)"),
        click.option("--verbose", "-v", is_flag=True, help="--no-ui: also one line per commit of the session log"),
        click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto"),
        click.option("--allow-pure-python", is_flag=True, help="run real devices even without the compiled kernel"),
        SENSOR_BAUD_OPTION,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _fail(message: str, code: int = EXIT_USAGE):
    """Refuse: ``fes: MESSAGE`` on standard error, exit status ``code`` (see fescontrol/cli/errors.py)."""
    from fescontrol.cli.errors import UserFacingError
    err = UserFacingError(message)
    err.exit_code = code
    raise err


def _check_test_burst(profile, burst_ms: int) -> None:
    """Refuse a test burst the profile cannot give before anything is opened or logged."""
    from fescontrol.session.modes import ModeError, test_burst_envelope
    try:
        test_burst_envelope(profile, burst_ms, int(round(1e6 / profile.device.sample_rate_hz)))
    except ModeError as err:
        _fail(f"--duration-ms {burst_ms}: refused, nothing started or logged: {err}")


def _start_session(first: str | None, *, sensor, stim, profile_path, sim_recording, side, speed, faults, duration,
                   db_path, log_frames, no_ui, kernel, allow_pure_python, sensor_baud, verbose=False,
                   test_burst_ms=1000, exit_when_done=False, force_headless=False) -> int:
    from fescontrol.kernel import DEFAULT_IMPLEMENTATION
    from fescontrol.ui.patient_ui import PatientSession, SimulatedDevices, run_with_ui
    from fescontrol.core.profile import ProfileError, bundled_profile_path, default_profile_for, load_profile

    if sim_recording is None and sensor is None:
        _fail("give --sensor PORT (and --stim PORT|emulator), or --sim RECORDING for the simulator")
    if sim_recording is None and (faults or speed != 1.0):
        _fail("--fault and --speed work only with --sim")
    sim = None
    try:
        if sim_recording is not None:
            from fescontrol.sim.replay import check_channels
            from fescontrol.sim.run import load_any
            rec = load_any(sim_recording, side)
            profile = load_profile(profile_path or default_profile_for(rec.has_heel, rec.has_imu))
            check_channels(rec, profile)
            if first == "train":
                seconds = duration if duration is not None else profile.training.session_min * 60 + 2
                activity = "seated"
            elif first == "test":
                seconds, activity = (duration or 0) + test_burst_ms / 1000 + 3, "seated"
            else:
                seconds, activity = duration, "walk"
            if first == "test":
                _check_test_burst(profile, test_burst_ms)
            sim = SimulatedDevices(rec, name=sim_recording, side=side, activity=activity, seconds=seconds,
                                   speed=speed, faults=faults)
        else:
            profile = load_profile(profile_path or bundled_profile_path("default"))
            if first == "test":
                _check_test_burst(profile, test_burst_ms)
            if (kernel == "python" or DEFAULT_IMPLEMENTATION != "cython") and not allow_pure_python:
                _fail("refusing to run real devices on the pure-Python kernel; run `make install`, "
                      "or pass --allow-pure-python for testing")
    except ProfileError as err:
        _fail(str(err))
    except (ValueError, FileNotFoundError) as err:
        _fail(f"--sim/--fault: {err}")
    session = PatientSession(profile, db_path=_db(db_path), sensor=sensor, stim=stim, sim=sim, first=first,
                          test_burst_ms=test_burst_ms, log_frames=log_frames, implementation=kernel,
                          exit_when_done=exit_when_done or (sim is not None and no_ui),
                          duration_s=duration if sim is None else None, sensor_baud=sensor_baud)
    headless = force_headless or no_ui or not (sys.stdin.isatty() and sys.stdout.isatty())
    try:
        return run_with_ui(session, ui="headless" if headless else "curses", echo=click.echo, verbose=verbose)
    except SessionLogError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"cannot open a port: {err}")
    except Exception as err:
        from fescontrol.drivers.stimulator import StimulatorError
        if isinstance(err, StimulatorError):
            _fail(f"stimulator: {err}")
        raise
    return EXIT_OK


def register(main: click.Group) -> None:
    """Add the patient commands to the ``fes`` group."""

    @main.command("walk")
    @_session_options
    @click.option("--standby", is_flag=True, help="open the screen without starting to walk")
    def walk(standby: bool, **kw) -> None:
        """Walk: gait-triggered stimulation, with pause/resume/stop and intensity +/- on the screen."""
        sys.exit(_start_session(None if standby else "walk", **kw))

    @main.command("train")
    @_session_options
    @click.option("--exit-when-done", is_flag=True, help="leave when the training session ends")
    def train(exit_when_done: bool, **kw) -> None:
        """Training: cyclic stimulation while seated (profile.training: on/off times, ramps, minutes)."""
        sys.exit(_start_session("train", exit_when_done=exit_when_done, **kw))

    @main.command("test-burst")
    @_session_options
    @click.option("--duration-ms", "burst_ms", type=click.IntRange(1, TEST_BURST_MS_MAX), default=1000,
                  show_default=True, help=f"burst length, ramps included (the profile's ramps + a few periods "
                                          f"..{TEST_BURST_MS_MAX} ms)")
    def test_burst(burst_ms: int, **kw) -> None:
        """One burst of the profile's envelope to check electrode placement, then exit."""
        kw["no_ui"] = True
        sys.exit(_start_session("test", test_burst_ms=burst_ms, exit_when_done=True, force_headless=True, **kw))

    @main.group("log")
    def log_group() -> None:
        """The session database: list, show, export, daily summary."""

    @log_group.command("list")
    @_db_option
    def log_list(db_path: str | None) -> None:
        """Every session: start, length, profile, modes, steps, faults, how it ended."""
        with _open_log(db_path) as slog:
            rows = slog.sessions()
            if not rows:
                click.echo(f"{slog.path}: no sessions yet")
                return
            click.echo(f"{'id':>4}  {'started':<19}  {'length':>8}  {'profile':<28}  {'modes':<18}  "
                       f"{'steps':>5}  {'faults':>6}  end")
            for r in rows:
                # an interrupted session ends with the last thing it logged (a step, an event)
                end = r["ended_wall"] or max(w for w in (r["last_event_wall"], r["last_burst_wall"],
                                                         r["started_wall"]) if w is not None)
                status = r["end_reason"] if r["ended_wall"] else "interrupted (no clean end)"
                click.echo(f"{r['id']:>4}  {_time(r['started_wall']):<19}  {_dur(end - r['started_wall']):>8}  "
                           f"{(r['profile_name'] + '@' + r['profile_hash'][:8])[:28]:<28}  "
                           f"{(r['modes'] or '-')[:18]:<18}  {r['steps']:>5}  {r['faults']:>6}  {status}")

    @log_group.command("show")
    @click.argument("session")
    @_db_option
    @click.option("--all", "show_all", is_flag=True, help="every burst (default: the first 20 and the last 5)")
    def log_show(session: str, db_path: str | None, show_all: bool) -> None:
        """One session: profile, timeline of modes, intensity and faults, and its steps."""
        with _open_log(db_path) as slog:
            sid = _session_id(slog, session)
            s = slog.session(sid)
            click.echo(f"session {sid}: {_time(s['started_wall'])} → "
                       f"{_time(s['ended_wall']) if s['ended_wall'] else 'interrupted'}"
                       f"{' (' + s['end_reason'] + ')' if s['end_reason'] else ''}")
            click.echo(f"profile {s['profile_name']} sha256:{s['profile_hash']}")
            click.echo(f"kernel {s['kernel']}; {s['software']}; sensor {s['sensor']}; stimulator {s['stimulator']}; "
                       f"raw frames {'logged' if s['frames_logged'] else 'not logged'}"
                       f"{'; ' + str(s['frames_processed']) + ' frames processed' if s['frames_processed'] else ''}")
            click.echo("\ntimeline:")
            for e in slog.events(sid):
                if e["kind"] == "command":
                    continue
                t = f"{e['t_us'] / 1e6:9.3f} s" if e["t_us"] else " " * 11
                value = f" {e['value']:g} mA" if e["kind"] == "intensity" else ""
                click.echo(f"  {_time(e['wall'])}  {t}  {e['kind']:<13} {e['name']}{value}"
                           f"{'  ' + e['detail'] if e['detail'] else ''}")
            bursts = slog.bursts(sid)
            click.echo(f"\nbursts: {sum(b['kind'] == 'step' for b in bursts)} steps, "
                       f"{sum(b['kind'] == 'training' for b in bursts)} training contractions, "
                       f"{sum(b['kind'] == 'test' for b in bursts)} test bursts")
            shown = bursts if show_all or len(bursts) <= 25 else bursts[:20] + [None] + bursts[-5:]
            if bursts:
                click.echo(f"  {'kind':<8} {'#':>4} {'onset s':>9} {'dur ms':>7} {'peak mA':>7}  events")
            for b in shown:
                if b is None:
                    click.echo(f"  … {len(bursts) - 25} more (--all)")
                    continue
                flags = (" cut-off" if b["cut_off"] else "") + ("" if b["complete"] else " interrupted")
                click.echo(f"  {b['kind']:<8} {b['number']:>4} {b['onset_us'] / 1e6:9.3f} {b['duration_ms']:7.0f} "
                           f"{b['peak_ma']:7.1f}  {b['events']}{flags}")

    @log_group.command("export")
    @click.argument("session")
    @_db_option
    @click.option("--csv", "fmt", flag_value="csv", help="CSV: one row per record (events and bursts)")
    @click.option("--json", "fmt", flag_value="json", default=True, help="JSON: the session, events, bursts")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False), help="file (default: standard output)")
    def log_export(session: str, db_path: str | None, fmt: str, out_path: str | None) -> None:
        """Export one session as CSV or JSON."""
        with _open_log(db_path) as slog:
            sid = _session_id(slog, session)
            text = _export_csv(slog, sid) if fmt == "csv" else _export_json(slog, sid)
        if out_path:
            Path(out_path).write_text(text, encoding="utf-8")
            click.echo(f"session {sid} → {out_path}")
        else:
            click.echo(text, nl=False)

    @log_group.command("summary")
    @_db_option
    def log_summary(db_path: str | None) -> None:
        """Daily usage: steps, walking and stimulation minutes, training sessions, faults."""
        with _open_log(db_path) as slog:
            days = slog.summary()
        if not days:
            click.echo("no sessions yet")
            return
        click.echo(f"{'date':<10}  {'sessions':>8}  {'steps':>6}  {'walking min':>11}  {'stim min':>8}  "
                   f"{'training':>8}  {'faults':>6}")
        for d in days:
            click.echo(f"{d['date']:<10}  {d['sessions']:>8}  {d['steps']:>6}  {d['walking_min']:>11.1f}  "
                       f"{d['stimulation_min']:>8.1f}  {d['training_sessions']:>8}  {d['faults']:>6}")

    @main.command("replay")
    @click.argument("session")
    @_db_option
    @click.option("--profile", "profile_path", type=click.Path(exists=True, dir_okay=False),
                  help="replay with this profile instead of the logged one")
    @click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto")
    def replay(session: str, db_path: str | None, profile_path: str | None, kernel: str) -> None:
        """Re-run a session logged with --log-frames through a fresh controller and compare the
        per-sample output current with the log, bit for bit. Exit 0 when identical."""
        from fescontrol.session.modes import ReplayError, replay_from_log
        from fescontrol.core.profile import ProfileError, load_profile
        from fescontrol.core.profile_diff import profile_hash
        with _open_log(db_path) as slog:
            sid = _session_id(slog, session)
            row = slog.session(sid)
            profile = None
            if profile_path:
                try:
                    profile = load_profile(profile_path)
                except ProfileError as err:
                    _fail(str(err))
                if profile_hash(profile) != row["profile_hash"]:
                    click.echo(f"note: {profile_path} differs from the logged profile "
                               f"(sha256 {profile_hash(profile)[:12]} vs {row['profile_hash'][:12]}): "
                               f"outputs are expected to differ")
            try:
                outcome, cmp, used = replay_from_log(slog, sid, profile, implementation=kernel)
            except (SessionLogError, ReplayError) as err:
                _fail(str(err), EXIT_FAULT)
        k = outcome.controller.kernel
        click.echo(f"session {sid}: replayed {k.frames} frames with {outcome.commands_applied} commands on the "
                   f"{outcome.controller.implementation} kernel (profile {used.name}@{profile_hash(used)[:12]})")
        if cmp.identical:
            click.echo(f"identical: {cmp.compared} samples of output current match the log bit for bit "
                       f"(logged {cmp.logged_samples}, replayed {cmp.replayed_samples})")
            if cmp.detail:
                click.echo(f"note: {cmp.detail}")
            sys.exit(EXIT_OK)
        click.echo(f"DIFFERENT: {cmp.detail} ({cmp.compared} samples compared)")
        sys.exit(EXIT_FAULT)


# ----- helpers -----------------------------------------------------------------------------------

def _open_log(db_path: str | None) -> SessionLog:
    from fescontrol.session.log import read_only_reason
    path = _db(db_path)
    try:
        return SessionLog(path, create=False)
    except SessionLogError as err:
        if not (path.is_file() and read_only_reason(path)):
            _fail(str(err))
    try:  # a database on a read-only file system (or without write permission) can still be read
        return SessionLog(path, create=False, readonly=True)
    except SessionLogError as err:
        _fail(str(err))


def _session_id(slog: SessionLog, text: str) -> int:
    if text == "last":
        sid = slog.last_session_id()
        if sid is None:
            _fail(f"{slog.path}: no sessions yet")
        return sid
    try:
        sid = int(text)
    except ValueError:
        _fail(f"SESSION must be a number (see `fes log list`) or 'last', not {text!r}")
    try:
        slog.session(sid)
    except SessionLogError as err:
        _fail(str(err))
    return sid


def _time(wall: float | None) -> str:
    return datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S") if wall else ""


def _dur(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _export_json(slog: SessionLog, sid: int) -> str:
    s = dict(slog.session(sid))
    s["profile"] = json.loads(s.pop("profile_json"))
    data = {"session": s, "events": slog.events(sid), "bursts": slog.bursts(sid)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = ("record", "wall_iso", "t_s", "kind", "name", "value", "detail", "frame",
              "number", "onset_s", "duration_ms", "peak_ma", "heel_strike_s", "events", "cut_off", "complete")


def _export_csv(slog: SessionLog, sid: int) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    rows = []
    for e in slog.events(sid):
        rows.append((e["wall"], {"record": "event", "wall_iso": _iso(e["wall"]),
                                 "t_s": _seconds(e["t_us"]), "kind": e["kind"],
                                 "name": e["name"], "value": _rounded(e["value"], 6),
                                 "detail": e["detail"], "frame": "" if e["frame"] is None else e["frame"]}))
    for b in slog.bursts(sid):
        rows.append((b["wall"], {"record": "burst", "wall_iso": _iso(b["wall"]), "t_s": _seconds(b["onset_us"]),
                                 "kind": b["kind"], "number": b["number"], "onset_s": _seconds(b["onset_us"]),
                                 "duration_ms": _rounded(b["duration_ms"], 3), "peak_ma": _rounded(b["peak_ma"], 6),
                                 "heel_strike_s": _seconds(b["heel_strike_us"]),
                                 "events": b["events"], "cut_off": b["cut_off"], "complete": b["complete"]}))
    for _, row in sorted(rows, key=lambda r: r[0]):
        w.writerow(row)
    return out.getvalue()


def _rounded(x: float | None, places: int) -> str:
    """A logged float without binary noise (29.999999999999996 → 30.0): ``places`` decimals
    are far below the device's resolution (mA: 6 → nA; ms: 3 → µs)."""
    return "" if x is None else repr(round(float(x), places))


def _seconds(t_us: int | None) -> str:
    """Sensor time in s from µs, exact (µs resolution, no float noise)."""
    return "" if t_us is None else repr(round(t_us / 1e6, 6))


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="milliseconds")
