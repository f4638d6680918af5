"""``fes`` commands of the orthotist workflow: calibrate, profile history, live view, report.

Over 400 lines: one click command per orthotist workflow (calibrate, profile, live, report) with
the checks of their options.

NOT A CLEARED MEDICAL DEVICE. See docs/orthotist.md.

Registered into the ``fes`` group by :func:`register` (fescontrol/cli/__init__.py imports this
module when present). Heavy libraries (the web server, matplotlib) are imported only by
the command that needs them.
"""
from __future__ import annotations

from pathlib import Path

import click

from fescontrol.cli.types import DURATION, SENSOR_BAUD_OPTION, START_TIME, TCP_PORT, speed_type
from fescontrol.core.profile import Profile, ProfileError, load_profile, profile_to_yaml

STORE_HELP = "profile store folder (versions and history per patient)"
DEFAULT_STORE = "profiles"


def _fail(message: str, code: int = 2) -> None:
    """Refuse: ``fes: MESSAGE`` on standard error, exit status ``code`` (see fescontrol/cli/errors.py)."""
    from fescontrol.cli.errors import UserFacingError
    err = UserFacingError(message)
    err.exit_code = code
    raise err


def _profile_for(path: str | None, recording=None) -> Profile:
    from fescontrol.core.profile import bundled_profile_path, default_profile_for
    try:
        if path:
            return load_profile(path)
        if recording is not None:
            return load_profile(default_profile_for(recording.has_heel, recording.has_imu))
        return load_profile(bundled_profile_path("default"))
    except ProfileError as err:
        _fail(str(err))


def _walk(recording: str, side: str | None):
    from fescontrol.tools.calibration import CalibrationError, load_walk
    try:
        return load_walk(recording, side)
    except (FileNotFoundError, ValueError, CalibrationError) as err:
        _fail(f"recording {recording!r}: {err}")


def _store(path: str):
    from fescontrol.tools.profile_store import ProfileStore
    return ProfileStore(path)


def _patient(store, patient: str | None, profile: Profile | None = None, required: bool = True) -> str | None:
    """--patient, else the profile's patient_id, else the store's only patient."""
    if patient:
        return patient
    if profile is not None and profile.patient_id:
        return profile.patient_id
    known = store.patients()
    if len(known) == 1:
        return known[0]
    if required:
        _fail("which patient? give --patient ID" + (f" (in the store: {', '.join(known)})" if known else ""))
    return None


# ----------------------------------------------------------------------------- calibrate
@click.command("calibrate")
@click.option("--sensor", help="record the walk from this sensor port (device path, pty or URL)")
@click.option("--recording", help="use a recorded walk: bundled name, file path, *.fesraw or synthetic:NAME")
@click.option("--profile", "profile_path", required=True, type=click.Path(exists=True),
              help="the current profile (its trigger mode decides what is calibrated)")
@click.option("--side", type=click.Choice(["left", "right"]), help="which foot of the recording")
@click.option("--seconds", type=DURATION, default=60.0, show_default=True, help="with --sensor: how long to record")
@click.option("--save-walk", type=click.Path(), help="with --sensor: keep the raw frames (*.fesraw)")
@SENSOR_BAUD_OPTION
@click.option("--objective", type=click.Choice(["auto", "reference", "structure"]), default="auto",
              show_default=True, help="reference events when the walk has them, else the gait's structure")
@click.option("--passes", type=click.IntRange(1, 4), default=2, show_default=True)
@click.option("--check-on", "check_on", multiple=True,
              help="another walk of the same walker (same foot; repeatable): the proposal is scored there too, "
                   "and one that scores worse there says so before it is accepted")
@click.option("--yes", "--accept", "yes", is_flag=True, help="accept the proposal without asking (needs --by)")
@click.option("--accept-worse", is_flag=True,
              help="with --yes: store even a proposal that is worse on a --check-on walk")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
@click.option("--patient", help="patient id (default: the profile's patient_id; with neither, and no --out, "
                                "the proposal is shown and nothing is stored)")
@click.option("--by", help="who accepts the proposal (asked for when missing)")
@click.option("--note", default="", help="why (added to the history)")
@click.option("--out", "out_path", type=click.Path(), help="also write the accepted profile to this YAML file")
@click.option("--plot", "plot_path", type=click.Path(), help="write a before/after PNG")
@click.option("--json", "json_path", type=click.Path(), help="write the figures as JSON")
@click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto")
def calibrate_command(sensor, recording, profile_path, side, seconds, save_walk, sensor_baud, objective, passes,
                      check_on, yes, accept_worse, store, patient, by, note, out_path, plot_path, json_path,
                      kernel) -> None:
    """Propose trigger thresholds, hysteresis, debounce and timing from a short walk.

    Shows the figures of the current and the proposed profile on that walk (steps detected,
    onset timing, false onsets in the standing parts) and stores the proposal as a new
    profile version only when accepted (prompt, or --yes). Every candidate is validated
    against the hard caps.
    """
    from fescontrol.tools.calibration import (CalibrationError, Calibrator, calibration_json, plot_before_after,
                              record_walk)
    from fescontrol.tools.profile_store import StoreError
    if bool(sensor) == bool(recording):
        _fail("give exactly one of --sensor PORT or --recording PATH")
    profile = _profile_for(profile_path)
    st = _store(store)
    pid = patient or profile.patient_id
    if yes and not by:
        _fail("--yes/--accept needs --by NAME: every stored version says who made it")
    propose_only = pid is None and not out_path
    if propose_only and yes:
        _fail("--yes stores the proposal, but there is nowhere to store it: the profile has no patient_id; "
              "give --patient ID (versions are kept per patient) or --out FILE")
    if sensor:
        rec, _, live_events = record_walk(sensor, seconds, profile, save_to=save_walk, side=side,
                                          echo=click.echo, baudrate=sensor_baud)
        click.echo(f"recorded {rec.duration_s:.1f} s; the live loop detected "
                   f"{sum(e.event == 'heel_off' for e in live_events)} onsets")
    else:
        rec = _walk(recording, side)
    bar = None
    try:
        from tqdm import tqdm
        bar = tqdm(total=1, unit="candidate", desc="calibrating", leave=False, disable=None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
        cal = Calibrator(profile, objective=objective, passes=passes, implementation=kernel,
                         progress=progress).fit(rec)
    except (CalibrationError, ProfileError) as err:
        _fail(str(err))
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"walk: {rec.name} ({rec.side} foot, {rec.duration_s:.1f} s); profile {profile.name!r}, "
               f"trigger {profile.trigger.mode.value}")
    click.echo(cal.summary())
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot_before_after(cal, rec, plot_path)
        click.echo(f"plot: {plot_path}")
    if json_path:
        Path(json_path).write_text(calibration_json(cal), encoding="utf-8")
        click.echo(f"figures: {json_path}")
    if not cal.changes_:
        click.echo("nothing to store.")
        return
    checks, worse = [], []
    for other in check_on:
        from fescontrol.tools.calibration_check import check_out_of_sample
        try:
            check = check_out_of_sample(cal, _walk(other, rec.side), implementation=kernel)
        except (ValueError, ProfileError) as err:       # CalibrationError, missing channels
            _fail(f"--check-on {other}: {err}")
        click.echo("")
        click.echo(check.summary())
        checks.append(check)
        if check.worse:
            worse.append(check)
    if worse:
        click.echo("")
        click.echo("WARNING: the proposal is worse out of sample on "
                   + ", ".join(f"{c.walk} ({c.before.objective:.3f} -> {c.after.objective:.3f})" for c in worse)
                   + ": it may fit this walk rather than the walker.")
        if yes and not accept_worse and not propose_only:
            click.echo("not stored: --yes does not accept a proposal that is worse out of sample; "
                       "add --accept-worse to store it anyway.")
            return
    if propose_only:
        click.echo("proposal only, nothing stored: the profile has no patient_id. To keep it, run again with "
                   "--patient ID (a new version in the profile store) or --out FILE (a YAML file).")
        return
    accepted = yes
    if not accepted:
        try:
            accepted = click.confirm("Store the proposed profile as a new version"
                                     + (" although it is worse out of sample?" if worse else "?"), default=False)
        except click.Abort:          # no input (closed stdin): not accepted
            accepted = False
    if not accepted:
        click.echo("not accepted: nothing stored.")
        return
    if not by:
        by = click.prompt("your name (kept in the history)")
    auto_note = (f"calibration on {rec.name} ({rec.side}), objective {cal.objective_}: "
                 f"{cal.before_.objective:.3f} -> {cal.after_.objective:.3f}"
                 + "".join(f"; {'WORSE' if c in worse else 'checked'} out of sample on {c.walk}: "
                           f"{c.before.objective:.3f} -> {c.after.objective:.3f}" for c in checks))
    if pid is not None:
        try:
            base = st.ensure_baseline(profile, by=by, source=profile_path, patient_id=pid)
            if base is not None:
                click.echo(f"stored the starting profile as {base.label}")
            v = st.save(cal.proposed_, by=by, note=(note + " — " if note else "") + auto_note,
                        action="calibration", patient_id=pid, source="calibration")
        except (StoreError, ProfileError) as err:
            _fail(f"not stored: {err}")
        click.echo(f"stored: patient {v.patient_id} version {v.version} ({st.root / v.patient_id / v.file})")
    if out_path:
        Path(out_path).write_text(profile_to_yaml(cal.proposed_), encoding="utf-8")
        click.echo(f"profile written: {out_path}")


# ----------------------------------------------------------------------------- profile history
@click.group("profile")
def profile_group() -> None:
    """Versioned profiles per patient: save, history, diff, rollback, show."""


@profile_group.command("save")
@click.argument("file", type=click.Path(exists=True))
@click.option("--by", required=True, help="who made the change")
@click.option("--note", required=True, help="why")
@click.option("--patient", help="patient id (default: the profile's patient_id)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
def profile_save(file, by, note, patient, store) -> None:
    """Validate FILE and store it as the patient's next version (refused changes are never stored)."""
    from fescontrol.core.profile import read_profile_data
    from fescontrol.tools.profile_store import StoreError
    st = _store(store)
    try:
        data = read_profile_data(file)
        v = st.save(data if isinstance(data, dict) else {}, by=by, note=note, patient_id=patient, source=file)
    except ProfileError as err:
        _fail(f"refused, nothing stored:\n{err}")
    except StoreError as err:
        _fail(str(err))
    click.echo(f"stored {v.label}: {len(v.changes)} change(s) from version {v.based_on}" if v.based_on
               else f"stored {v.label}: first version")


@profile_group.command("history")
@click.argument("patient_arg", metavar="[PATIENT]", required=False)
@click.option("--patient", help="one patient (default: all; same as PATIENT)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
def profile_history(patient_arg, patient, store) -> None:
    """Who changed what, when and why: of PATIENT, or of every patient in the store."""
    from fescontrol.tools.profile_store import StoreError, format_history
    if patient_arg and patient and patient_arg != patient:
        _fail(f"two patients given: {patient_arg!r} and --patient {patient!r}; give one")
    patient = patient_arg or patient
    st = _store(store)
    if patient and patient not in st.patients():
        known = st.patients()
        _fail(f"patient {patient!r}: nothing stored in {st.root}"
              + (f" (patients there: {', '.join(known)})" if known else " (the store is empty)"))
    patients = [patient] if patient else st.patients()
    if not patients:
        click.echo(f"no profiles stored in {st.root}")
        return
    try:
        for pid in patients:
            click.echo(format_history(st.history(pid), st))
    except StoreError as err:
        _fail(str(err))


@profile_group.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--patient", help="patient of plain version numbers")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
def profile_diff(a, b, patient, store) -> None:
    """Differences A → B. A and B: version N (with --patient), PATIENT@N, PATIENT or a YAML file."""
    from fescontrol.tools.profile_store import StoreError, diff_profiles, format_changes
    st = _store(store)
    pid = patient or _patient(st, None, required=False)
    try:
        la, pa = st.resolve(a, pid)
        lb, pb = st.resolve(b, pid)
    except (StoreError, ProfileError) as err:
        _fail(str(err))
    click.echo(f"{la} -> {lb}")
    click.echo(format_changes(diff_profiles(pa, pb)))


@profile_group.command("rollback")
@click.argument("args", nargs=-1, metavar="[PATIENT] VERSION")
@click.option("--by", required=True, help="who rolls back")
@click.option("--note", default="", help="why")
@click.option("--patient", help="patient id (default: PATIENT, else the store's only patient)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
def profile_rollback(args, by, note, patient, store) -> None:
    """Make VERSION of PATIENT current again, as a new version (the history is never rewritten).
    PATIENT may be left out when --patient is given or the store holds one patient."""
    from fescontrol.tools.profile_store import StoreError
    if len(args) not in (1, 2):
        raise click.UsageError(f"give [PATIENT] VERSION, e.g. `fes profile rollback anna 2`; got {len(args)} "
                               f"argument(s)")
    if len(args) == 2:
        if patient and patient != args[0]:
            _fail(f"two patients given: {args[0]!r} and --patient {patient!r}; give one")
        patient = args[0]
    text = args[-1]
    if text.isdigit() and int(text) >= 1:
        version = int(text)
    elif "@" in text and text.rpartition("@")[2].isdigit() and not patient:   # PATIENT@N
        patient, version = text.rpartition("@")[0], int(text.rpartition("@")[2])
    else:
        raise click.BadParameter(f"{text!r} is not a version number (1, 2, ...; see `fes profile history`)",
                                 param_hint="VERSION")
    st = _store(store)
    pid = _patient(st, patient)
    try:
        v = st.rollback(pid, version, by=by, note=note)
    except (StoreError, ProfileError) as err:
        _fail(str(err))
    click.echo(f"stored {v.label}: rollback to version {version} ({len(v.changes)} change(s))")


@profile_group.command("show")
@click.argument("ref")
@click.option("--patient")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
def profile_show(ref, patient, store) -> None:
    """Print a stored version as YAML (REF: N, PATIENT@N or PATIENT)."""
    from fescontrol.tools.profile_store import StoreError
    st = _store(store)
    try:
        _, prof = st.resolve(ref, patient or _patient(st, None, required=False))
    except (StoreError, ProfileError) as err:
        _fail(str(err))
    click.echo(profile_to_yaml(prof), nl=False)


# ----------------------------------------------------------------------------- live
@click.command("live")
@click.option("--sensor", help="sensor port (device path, pty or URL)")
@SENSOR_BAUD_OPTION
@click.option("--recording", help="replay this walk at real-time speed over a pseudo-terminal")
@click.option("--side", type=click.Choice(["left", "right"]))
@click.option("--profile", "profile_path", type=click.Path(exists=True), help="profile YAML")
@click.option("--port", type=TCP_PORT, default=8765, show_default=True,
              help="web page on 127.0.0.1:PORT (0 picks a free one)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs --allow-remote")
@click.option("--allow-remote", is_flag=True,
              help="confirm a non-loopback --host: other computers can reach the page (token still required)")
@click.option("--start", "start_s", type=START_TIME, default=0.0, help="with --recording: start at this second")
@click.option("--speed", type=speed_type(allow_zero=False), default=1.0, show_default=True, hidden=True)
@click.option("--stim", help="stimulator: PORT, BACKEND:PORT or 'emulator' (default: none, outputs only shown)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
@click.option("--patient", help="patient id for saved versions (default: the profile's)")
@click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto")
@click.option("--duration", type=DURATION, help="stop after this many seconds")
def live_command(sensor, sensor_baud, recording, side, profile_path, port, host, allow_remote, start_s, speed, stim,
                 store, patient, kernel, duration) -> None:
    """Live view in the browser: signals, events, state and envelope; safe live changes.

    The printed URL carries this session's secret token (?token=…); the page refuses every
    request without it, from another origin, or under another host name. Keep it private.
    """
    import threading
    import time
    from contextlib import ExitStack

    from fescontrol.tools.live import LiveError, LiveSession, port_source, recording_source
    from fescontrol.tools.live.server import LiveServer, LiveServerError, bind_address
    try:
        bind_address(host, allow_remote)
    except LiveServerError as err:
        _fail(str(err))
    if bool(sensor) == bool(recording):
        _fail("give exactly one of --sensor PORT or --recording PATH")
    rec = _walk(recording, side) if recording else None
    profile = _profile_for(profile_path, rec)
    if rec is not None:
        from fescontrol.sim.replay import check_channels
        try:
            check_channels(rec, profile)
            open_fd, close = recording_source(rec, start_s=start_s, speed=speed)
        except (ProfileError, LiveError) as err:
            _fail(str(err))
        source = f"replay of {rec.name} ({rec.side}) from {start_s:g} s at {speed:g}× real time"
    else:
        open_fd, close = port_source(sensor, sensor_baud)
        source = f"sensor {sensor}"
    with ExitStack() as stack:
        stimulator = None
        if stim:
            from fescontrol.loop.runner import open_stimulator
            stimulator = open_stimulator(profile, stim)
            stimulator.open()
            stack.callback(stimulator.close)
            source += f"; stimulator {stim}"
        session = LiveSession(profile, open_fd, close=close, stimulator=stimulator, implementation=kernel,
                              store=_store(store), patient_id=patient or profile.patient_id, source=source)
        try:
            server = LiveServer(session, port=port, host=host, allow_remote=allow_remote)
        except LiveServerError as err:
            _fail(str(err))
        if server.remote:
            click.echo(f"WARNING: the live view listens on {server.host}:{server.port}, beyond this computer. "
                       "Anyone on the network with the URL below can drive the stimulator, and plain HTTP is "
                       "not encrypted: use it only on a network you trust.", err=True)
        session.start()
        stack.callback(session.stop)
        click.echo(f"live view: {server.url}  ({source}); Ctrl-C stops")
        click.echo("  the ?token=… in this address is this session's secret: every request needs it; "
                   "share it only with who may drive the stimulator")
        if duration is not None:
            threading.Timer(duration, lambda: setattr(server.server, "should_exit", True)).start()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        time.sleep(0.05)
        snap = session.snapshot()
        for a in session.actions:
            click.echo(f"  {time.strftime('%H:%M:%S', time.localtime(a.asked_wall_s))} {a.kind}"
                       f"{' (' + a.detail + ')' if a.detail else ''} by {a.by}: {a.outcome}")
        click.echo(f"stopped in state {snap['state']}; {len(session.changes)} change(s), "
                   f"{len(session.test_bursts)} test burst(s), {len(session.saved_versions)} version(s) saved, "
                   f"{server.app.guard.refused} request(s) refused")


# ----------------------------------------------------------------------------- report
@click.command("report")
@click.argument("session_id", metavar="[SESSION]", required=False)
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="session database for SESSION (default: $FES_DB, else ~/.local/share/fescontrol/sessions.db)")
@click.option("--recording", help="bundled name, file path, *.fesraw or synthetic:NAME")
@click.option("--side", type=click.Choice(["left", "right"]))
@click.option("--profile", "profile_path", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="folder for report.html and figures (created; an existing report there is replaced)")
@click.option("--store", default=DEFAULT_STORE, show_default=True, help=STORE_HELP)
@click.option("--patient", help="list this patient's profile history in the report")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on long replays)")
@click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto")
def report_command(session_id, db_path, recording, side, profile_path, out_dir, store, patient, progress,
                   kernel) -> None:
    """HTML report (+ PNG figures) of a logged SESSION (a number or 'last') or of a walk
    (--recording): steps, cadence, stimulation, onset timing per step, faults, changes."""
    from fescontrol.tools.report import ReportError, history_changes, write_report, write_session_report
    if bool(session_id) == bool(recording):
        _fail("give a SESSION (number or 'last', see `fes log list`) or --recording PATH")
    st = _store(store)
    if session_id:
        if profile_path:
            _fail("--profile is for --recording; a session is reported with the profile it ran with")
        try:
            from fescontrol.tools.report import session_source
            src_profile = session_source(session_id, db_path)["profile"]
            pid = patient or src_profile.patient_id
            changes = history_changes(st, pid) if pid and pid in st.patients() else []
            rep = write_session_report(session_id, out_dir, db_path=db_path, changes=changes)
        except ReportError as err:
            _fail(str(err))
    else:
        rec = _walk(recording, side)
        profile = _profile_for(profile_path, rec)
        pid = patient or profile.patient_id
        changes = history_changes(st, pid) if pid and pid in st.patients() else []
        try:
            rep = write_report(rec, profile, out_dir, changes=changes, implementation=kernel, progress=progress)
        except ProfileError as err:
            _fail(str(err))
    click.echo(f"{rep.recording} ({rep.side}): {rep.steps} steps, {rep.stimulations} stimulations, "
               f"{rep.stimulation_time_s:.1f} s on, cadence {rep.cadence_spm:.0f} steps/min, "
               f"{len(rep.faults)} fault(s)")
    click.echo(f"report: {Path(out_dir) / 'report.html'}")


def register(main: click.Group) -> None:
    """Add the orthotist commands to the ``fes`` group (merging into an existing ``profile`` group)."""
    for cmd in (calibrate_command, live_command, report_command):
        main.add_command(cmd)
    existing = main.commands.get("profile")
    if isinstance(existing, click.Group) and existing is not profile_group:
        for name, cmd in profile_group.commands.items():
            existing.add_command(cmd, name)
    else:
        main.add_command(profile_group)
