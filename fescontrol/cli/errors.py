"""How ``fes`` turns a user's mistake into one clear line instead of a traceback.

Every command runs inside :meth:`FesGroup.invoke`; an exception of one of the project's
*user-error* types (a bad profile, recording, fault, port, database, store entry, file or
folder) that escapes a command becomes a :class:`UserFacingError`: ``fes: <message>`` on
standard error and exit status 2. Anything else is a bug and keeps its traceback. With
``FES_DEBUG=1`` user errors keep their traceback too (for a developer's bug report).

Each source raises its error with a message that names what was wrong, where, and what
is allowed; this module adds nothing but the last resort for OS errors (``<file>: <why>``)
and files that are not text.
"""
from __future__ import annotations

import os

import click

#: Environment variable: when set to 1, user errors show their traceback as well.
DEBUG_ENV = "FES_DEBUG"
EXIT_USER_ERROR = 2


class UserFacingError(click.ClickException):
    """A refused command line: printed as ``fes: <message>``, exit status 2."""

    exit_code = EXIT_USER_ERROR

    def show(self, file=None) -> None:
        click.echo(f"fes: {self.format_message()}", err=True, file=file)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user asked for something that cannot be done".

    Imported lazily so that ``fes --version`` stays fast.
    """
    from fescontrol.drivers.stimulator import StimulatorInitError
    from fescontrol.sim.faults import FaultError
    from fescontrol.sim.patient.params import PatientModelError
    from fescontrol.sim.recording import RecordingError

    from fescontrol.tools.calibration import CalibrationError
    from fescontrol.tools.live.session import LiveError
    from fescontrol.session.modes import ModeError, ReplayError
    from fescontrol.core.profile import ProfileError
    from fescontrol.tools.profile_store import StoreError
    from fescontrol.tools.report import ReportError
    from fescontrol.loop.runner import PortError
    from fescontrol.session.log import SessionLogError
    return (ProfileError, RecordingError, FaultError, PortError, StimulatorInitError, SessionLogError,
            StoreError, CalibrationError, ReportError, LiveError, ModeError, ReplayError,
            PatientModelError, UnicodeDecodeError, OSError)


def one_line(err: BaseException) -> str:
    """The message of a user error, with an OS error's file name in front of its reason."""
    if isinstance(err, UnicodeDecodeError):
        return (f"not a text file (byte {err.object[err.start:err.start + 1]!r} at offset {err.start} is not "
                f"UTF-8): give a profile YAML, a recording text file or a session database as each option asks")
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        target = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
        return f"{target}: {err.strerror}"
    text = str(err).strip()
    return text or type(err).__name__


def debug_tracebacks() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class FesGroup(click.Group):
    """The ``fes`` group: runs a command and reports user errors in one line (see module doc)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as err:
            if debug_tracebacks() or not isinstance(err, user_error_types()):
                raise
            raise UserFacingError(one_line(err)) from err
