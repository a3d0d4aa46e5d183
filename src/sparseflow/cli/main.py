"""Entry point: the typer app and the error boundary.

Every error caused by input becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from sparseflow.cli.interrupts import MESSAGE, Interrupted, handled
from sparseflow.errors import SparseflowError, os_error_message

app = typer.Typer(
    name="sparseflow",
    help="Study and improve how sparse neural networks train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from sparseflow._version import __version__

        print(f"sparseflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version,
                                       is_eager=True, help="Print the version and exit.")
          ) -> None:
    # Only the global options live here; the commands register below.
    pass


def _register_commands() -> None:
    # Imported here so `sparseflow --help` stays fast and commands register exactly once.
    from sparseflow.cli import (
        data_cmd,
        lift_cmd,
        list_cmd,
        pair_cmd,
        report_cmd,
        reproduce_cmd,
        study_cmd,
        train_cmd,
    )

    train_cmd.register(app)
    study_cmd.register(app)
    report_cmd.register(app)
    lift_cmd.register(app)
    pair_cmd.register(app)
    reproduce_cmd.register(app)
    list_cmd.register(app)
    data_cmd.register(app)


_register_commands()


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def fail_os(exc: OSError) -> None:
    """An OS error (read-only disk, a file where a folder should be, ...) as one line, exit 2:
    the cause is the machine's state or a path the user gave, not a bug."""
    fail(os_error_message(exc))


def interrupted(exit_code: int) -> None:
    """Print the one interrupt line and exit with ``exit_code`` (130 SIGINT, 143 SIGTERM)."""
    print(MESSAGE, file=sys.stderr)
    raise SystemExit(exit_code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; input errors exit 2 with one line; SIGINT / SIGTERM exit 130 / 143 with
    one line (see ``cli/interrupts.py``)."""
    with handled():
        try:
            # standalone_mode=False: typer returns the exit code of a typer.Exit (and turns a
            # KeyboardInterrupt into a returned 130) instead of exiting; dropping it would
            # report an interrupted command as a success.
            code = app(args=argv, standalone_mode=False)
        except Interrupted as exc:
            interrupted(exc.exit_code)
        except SparseflowError as exc:
            fail(str(exc))
        except OSError as exc:
            fail_os(exc)
        except typer.Exit as exc:
            raise SystemExit(exc.exit_code) from None
        except typer.Abort:
            print("aborted", file=sys.stderr)
            raise SystemExit(130) from None
        except TyperException as exc:  # usage errors: unknown option, missing argument, ...
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # typer already printed the help
                raise SystemExit(0) from None
            cmd = ctx.command_path if ctx is not None else "sparseflow"
            fail(f"{exc.format_message()} (see `{cmd} --help`)")
        except KeyboardInterrupt:  # raised by code, not by our handler
            interrupted(130)
    if code == 130:  # a KeyboardInterrupt that typer caught
        interrupted(130)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        raise SystemExit(code)
