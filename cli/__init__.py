"""The ``dimgen`` command line: thin click commands over the library.

Every command turns a :class:`dimgen.errors.DimgenError`, and a usage error (a bad or missing
option), into one line on stderr and exit code 2. Importing this package and parsing arguments
import no torch: argument errors come back in well under a second.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dimgen.errors import DimgenError

__all__ = ["cli", "main"]


class DimgenGroup(click.Group):
    """A click group that reports library errors as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DimgenError as exc:
            if _should_report(exc):
                click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # a bad option of a command: one line, like the rest
            where = exc.ctx.command_path if exc.ctx is not None else "dimgen"
            click.echo(f"error: {_one_line(exc.format_message())} (see '{where} --help')", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:  # name the folder being written and how to continue it
            from dimgen.folders import interrupted_message

            path, kind = ctx.meta.get("dimgen.writing", (None, None))
            click.echo(interrupted_message(path, kind, ctx.invoked_subcommand), err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader of stdout left (`dimgen ... | head`): no bug
            # Python's recipe (docs of signal, "Note on SIGPIPE"): point stdout at devnull so
            # that the flush at exit does not raise again, and exit as a SIGPIPE would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except Exception as exc:
            if os.environ.get("DIMGEN_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {_one_line(exc)} "
                "(this is a dimgen bug; set DIMGEN_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _should_report(exc: BaseException) -> bool:
    """Under torchrun, an error every process raised is printed by rank 0 only."""
    rank = os.environ.get("RANK", "0")
    if rank in ("", "0"):
        return True
    from dimgen.training.distributed import raised_everywhere

    return not raised_everywhere(exc)


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


@click.group(
    cls=DimgenGroup,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(package_name="dimgen", prog_name="dimgen")
def cli() -> None:
    """dimgen: distribution-matched representations (noise-injected Deep InfoMax) and generators."""


def _register() -> None:
    from importlib import import_module

    for mod in ("encode",):
        import_module(f"{__name__}.{mod}").register(cli)
    for mod in _optional_commands():
        try:
            import_module(f"{__name__}.{mod}").register(cli)
        except ModuleNotFoundError as exc:  # a command module not yet present
            if exc.name != f"{__name__}.{mod}":
                raise


def _optional_commands() -> tuple[str, ...]:
    return ("evaluate", "gan", "flow", "export", "pretrain", "diffusion")


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    Under a launcher (torchrun: ``WORLD_SIZE`` > 1) the process leaves with ``os._exit`` once
    the command is done and its streams are flushed: a gloo worker can abort in the
    interpreter's teardown after a finished run ("terminate called without an active
    exception"), which the launcher would report as a failure. Every file dimgen writes is
    closed (and renamed into place) before the command returns.
    """
    try:
        cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="dimgen")
    except SystemExit as exc:
        world = os.environ.get("WORLD_SIZE", "")
        if not (world.isdigit() and int(world) > 1):
            raise
        code = exc.code
        if not isinstance(code, int):
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
