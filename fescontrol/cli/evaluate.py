"""``fes recording convert``, ``fes evaluate`` and ``fes sweep``: bring your own recordings,
judge a profile on a cohort, tune a profile over a parameter grid (docs/recordings.md,
docs/scoring.md). The engines live in :mod:`fescontrol.sim.evaluate` and :mod:`fescontrol.sim.sweep`."""
from __future__ import annotations

import sys
import warnings

import click

EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def _warn_pure_python(kernels) -> None:
    """Workers on another machine may lack the compiled kernel: same figures, far slower."""
    from fescontrol.kernel import COMPILED
    if COMPILED and "python" in kernels:
        click.echo("warning: some workers ran the pure-Python kernel (the Cython extension is not built "
                   "there; run `make install` on those machines): figures are identical, speed is not", err=True)


@click.group("recording")
def recording_group() -> None:
    """Gait recordings: convert any supported source into the generic CSV format."""


@recording_group.command("convert")
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--side", type=click.Choice(["left", "right"]),
              help="which foot (default: the source's own foot, else left)")
def convert_command(source: str, out: str, side: str | None) -> None:
    """Write SOURCE (bundled name, file of any supported format, or synthetic:NAME) as a
    generic CSV recording OUT.csv plus its OUT.events.csv sidecar (docs/recordings.md)."""
    from fescontrol.sim.run import load_any
    from fescontrol.sim.sources.csv_recording import write_csv_recording
    if not out.endswith(".csv"):
        _fail(f"{out}: the output name must end in .csv (the events go to the .events.csv next to it)")
    warnings.showwarning = _show_warning
    try:
        rec = load_any(source, side) if side or source.startswith("synthetic:") else _load_default_side(source)
    except (ValueError, OSError) as err:
        _fail(f"recording {source!r}: {err}")
    csv_path, ev_path = write_csv_recording(rec, out)
    click.echo(f"{rec.name} ({rec.side} foot, {rec.rate_hz:g} Hz, {rec.duration_s:.1f} s, "
               f"{len(rec.reference_swings())} reference swings) -> {csv_path} + {ev_path}")


def _load_default_side(source: str):
    from fescontrol.sim.sources import load_recording
    return load_recording(source)


def _profile_arg(value: str | None):
    """--profile: a YAML file or a bundled profile name; None stays None (default per recording)."""
    from pathlib import Path

    from fescontrol.core.profile import ProfileError, bundled_profile_path, load_profile
    if value is None:
        return None
    try:
        return load_profile(value if Path(value).exists() else bundled_profile_path(value))
    except ProfileError as err:
        _fail(str(err))


def _engine_options(f):
    for opt in reversed([
        click.option("--scheduler", help="address of an existing Dask scheduler (tcp://HOST:8786); default "
                     "$DASK_SCHEDULER_ADDRESS, else a local cluster started and stopped by the command"),
        click.option("--workers", type=click.IntRange(min=1),
                     help="local cluster: worker processes (default one per core); with --scheduler: wait for "
                          "this many workers"),
        click.option("--kernel", type=click.Choice(["auto", "cython", "python"]), default="auto", show_default=True),
        click.option("--progress/--no-progress", default=None, help="progress bar (default: on a terminal)"),
    ]):
        f = opt(f)
    return f


@click.command("evaluate")
@click.argument("recordings", nargs=-1, required=True)
@click.option("--profile", "profile_path", help="profile YAML or bundled name (default: the bundled default "
              "for each recording's channels, as fes sim)")
@click.option("--side", type=click.Choice(["left", "right", "both"]), default="both", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the figures as JSON")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="write a self-contained HTML report")
@_engine_options
def evaluate_command(recordings, profile_path, side, json_out, html_out, scheduler, workers, kernel, progress):
    """Score a profile on many recordings (files, globs, folders, manifest CSV path,side,subject)
    on a Dask cluster: per-foot table, pooled, per-subject and worst-decile figures, plots."""
    import json
    from pathlib import Path

    from fescontrol.sim.engine import EngineError
    from fescontrol.sim.evaluate import RecordingSetError, evaluate, expand_recordings, format_report, write_html
    warnings.showwarning = _show_warning
    profile = _profile_arg(profile_path)
    try:
        items = expand_recordings(recordings, side)
    except RecordingSetError as err:
        _fail(str(err))
    if not items:
        _fail("no recordings to evaluate (the files hold no foot matching --side)")
    click.echo(f"evaluating {len(items)} feet of {len({i.source for i in items})} recordings with "
               f"{profile.name if profile else 'the bundled default profile per recording'} …", err=True)
    try:
        result = evaluate(items, profile, scheduler=scheduler, workers=workers, implementation=kernel,
                          progress=progress)
    except EngineError as err:
        _fail(str(err))
    click.echo(format_report(result))
    eng = result.to_json()["engine"]
    _warn_pure_python(eng["kernels"])
    click.echo(f"\n{eng['feet']} feet in {eng['elapsed_s']:.1f} s ({eng['feet_per_s']} feet/s) on "
               f"{eng['workers']} workers at {eng['scheduler']}; kernel {', '.join(eng['kernels']) or '-'}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result.to_json(), indent=1, default=float), encoding="utf-8")
        click.echo(f"figures: {json_out}")
    if html_out:
        click.echo(f"report: {write_html(result, html_out)}")
    sys.exit(1 if result.errors else 0)


@click.command("sweep")
@click.argument("recordings", nargs=-1, required=True)
@click.option("--profile", "profile_path", default="default", show_default=True,
              help="the base profile (YAML or bundled name); swept fields are set on it")
@click.option("--param", "params", multiple=True, metavar="PATH=START:STOP:STEP",
              help="a profile field and its values: START:STOP:STEP (inclusive), START:STOP (a range "
                   "for --samples) or V1,V2,…; repeat for a grid over several fields")
@click.option("--samples", type=click.IntRange(min=1), help="draw this many points instead of the full grid")
@click.option("--sampler", type=click.Choice(["lhs", "random"]), default="lhs", show_default=True,
              help="with --samples: Latin hypercube or uniform random")
@click.option("--seed", type=int, default=0, show_default=True, help="for --samples and the CV folds")
@click.option("--objective", type=click.Choice(["f1", "recall", "precision", "timely_recall",
                                                "false_onsets_per_min"]), default="f1", show_default=True,
              help="what 'best' means (false_onsets_per_min is minimised, the others maximised)")
@click.option("--max-false-per-min", type=float, help="only points with at most this many false onsets "
              "per minute can be best")
@click.option("--cv-by", type=click.Choice(["subject"]), help="report the held-out-fold score, folds by subject")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--side", type=click.Choice(["left", "right", "both"]), default="both", show_default=True)
@click.option("--block", type=click.IntRange(min=1), help="parameter points per task (default: automatic)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="every point's figures as JSON")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="recall vs false onsets Pareto plot (PNG)")
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="a self-contained HTML report: Pareto plot, held-out score, table of every point")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="write the best profile here (YAML)")
@_engine_options
def sweep_command(recordings, profile_path, params, samples, sampler, seed, objective, max_false_per_min,
                  cv_by, folds, side, block, json_out, plot_out, html_out, out_path, scheduler, workers, kernel,
                  progress):
    """Tune profile fields on many recordings: a grid (or --samples) of points, each validated by
    the profile model, replayed on a Dask cluster; table, Pareto plot, optional best profile."""
    import json
    from pathlib import Path

    from fescontrol.sim.engine import EngineError
    from fescontrol.sim.evaluate import RecordingSetError, expand_recordings
    from fescontrol.sim.sweep import ParamSpec, SweepError, format_sweep, plot_pareto, sweep, write_sweep_html

    from fescontrol.core.profile import profile_to_yaml
    warnings.showwarning = _show_warning
    base = _profile_arg(profile_path)
    try:
        specs = [ParamSpec.parse(p) for p in params]
        if not specs:
            raise SweepError("give at least one --param PATH=START:STOP:STEP")
        items = expand_recordings(recordings, side)
    except (SweepError, RecordingSetError) as err:
        _fail(str(err))
    n_points = samples or 1
    if not samples:
        for s in specs:
            n_points *= len(s.values)
    click.echo(f"sweep: {n_points} points × {len(items)} feet ({n_points * len(items)} replays), base profile "
               f"{base.name!r}, objective {objective}" + (f", {folds}-fold CV by subject" if cv_by else ""), err=True)
    try:
        result = sweep(items, base, specs, samples=samples, sampler=sampler, seed=seed, objective=objective,
                       max_false_per_min=max_false_per_min, cv_by=cv_by, folds=folds, scheduler=scheduler,
                       workers=workers, block=block, implementation=kernel, progress=progress)
    except (SweepError, EngineError) as err:
        _fail(str(err))
    click.echo(format_sweep(result))
    doc = result.to_json()
    eng = doc["engine"]
    _warn_pure_python(eng["kernels"])
    click.echo(f"\n{eng['replays']} replays in {eng['elapsed_s']:.1f} s ({eng['replays_per_s']} feet/s) on "
               f"{eng['workers']} workers at {eng['scheduler']}; {eng['tasks']} tasks of {eng['points_per_task']} "
               f"points; kernel {', '.join(eng['kernels']) or '-'}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
        click.echo(f"figures: {json_out}")
    if plot_out:
        Path(plot_out).parent.mkdir(parents=True, exist_ok=True)
        click.echo(f"plot: {plot_pareto(result, plot_out)}")
    if html_out:
        click.echo(f"report: {write_sweep_html(result, html_out, base_profile=base.name)}")
    if out_path:
        best = result.best
        if best is None:
            _fail("no valid point was scored, so there is no best profile to write", code=1)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        header = (f"# written by fes sweep: best of {len(result.valid)} points by {objective} on {result.feet} feet"
                  + (f"; held-out ({folds}-fold by subject) {objective} {result.cv['held_out_objective']}"
                     if result.cv else "") + "\n# NOT A CLEARED MEDICAL DEVICE. Review before use on a person.\n")
        Path(out_path).write_text(header + profile_to_yaml(best.profile), encoding="utf-8")
        click.echo(f"best profile: {out_path}")
    sys.exit(1 if result.load_errors else 0)


def register(main: click.Group) -> None:
    """Add the commands to the ``fes`` group."""
    main.add_command(recording_group)
    main.add_command(evaluate_command)
    main.add_command(sweep_command)
