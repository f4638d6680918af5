"""``fes recording convert``, ``fes evaluate`` and ``fes sweep``: bring your own recordings,
judge a profile on a cohort, tune a profile over a parameter grid (docs/recordings.md,
docs/scoring.md). The engines live in :mod:`sim.evaluate` and :mod:`sim.sweep`."""
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
    from sim.run import load_any
    from sim.sources.csv_recording import write_csv_recording
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
    from sim.sources import load_recording
    return load_recording(source)


def register(main: click.Group) -> None:
    """Add the commands to the ``fes`` group."""
    main.add_command(recording_group)
