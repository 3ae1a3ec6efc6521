"""`taskmesh`: parse, resolve the connection, run the command, and turn every failure into one
line on stderr with the exit code from taskmesh.cli.errors (never a traceback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from taskmesh.cli import config, errors, parser
from taskmesh.cli.context import Context
from taskmesh.cli.errors import CliError
from taskmesh.client import (
    ApiError,
    DeadlineExceeded,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

DEFAULT_TIMEOUT = 30.0


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    env = os.environ if env is None else env
    out, err = stdout or sys.stdout, stderr or sys.stderr
    own, shell_argv = split_shell_argv(list(sys.argv[1:] if argv is None else argv))
    ctx: Context | None = None
    try:
        args = parser.build().parse_args(own)
        args.shell_argv = shell_argv
        ctx = make_context(args, env, out, stdin or sys.stdin)
        return int(args.handler(ctx, args))
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except CliError as error:
        return report(err, str(error), error.exit_code)
    except config.ConfigError as error:
        return report(err, str(error), errors.USAGE)
    except ApiError as error:
        return report(err, describe(error, ctx), exit_code(error))
    except KeyboardInterrupt:
        return report(err, "interrupted", errors.INTERRUPTED)
    except BrokenPipeError:  # e.g. `taskmesh runs list | head`
        _silence(out)
        return errors.OK
    except Exception as error:
        if env.get("TASKMESH_DEBUG"):
            raise
        return report(err, f"unexpected {type(error).__name__}: {error} (TASKMESH_DEBUG=1 shows where)", 1)
    finally:
        if ctx is not None:
            ctx.close()


def split_shell_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` is a shell job's program and arguments."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def make_context(args: object, env: Mapping[str, str], out: TextIO, stdin: TextIO) -> Context:
    path = config.config_path(env)
    stored = config.load(path)
    connection = config.resolve(getattr(args, "server", None), getattr(args, "token", None), env, stored)
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise errors.UsageError("--timeout must be more than 0 seconds")
    return Context(
        connection=connection,
        config_path=path,
        env=env,
        output_format=getattr(args, "output", "table"),
        timeout=timeout,
        stdout=out,
        stdin=stdin,
    )


def describe(error: ApiError, ctx: Context | None) -> str:
    """One line saying what went wrong and, where it helps, what to do about it."""
    message = " ".join(error.message.split())
    server = ctx.connection.server if ctx else "the server"
    if isinstance(error, Unavailable):
        return f"server {server} unavailable: {message}"
    if isinstance(error, DeadlineExceeded):
        timeout = f"{ctx.timeout:g}s" if ctx else "the timeout"
        return f"deadline exceeded: no answer from {server} within {timeout}"
    if isinstance(error, Unauthenticated):
        source = ctx.connection.token_source if ctx else None
        hint = f"the token from {source} was refused" if source else "no token"
        return f"unauthenticated: {message} ({hint}; run `taskmesh login` or set TASKMESH_TOKEN)"
    if isinstance(error, Unimplemented):
        return (
            f"unimplemented: {message} (server {server} does not support this command: is it older than this CLI?)"
        )
    return f"{error.code_name}: {message}"


def exit_code(error: ApiError) -> int:
    return errors.UNREACHABLE if isinstance(error, Unavailable | DeadlineExceeded) else errors.API_ERROR


def report(stream: TextIO, message: str, code: int) -> int:
    stream.write(f"error: {' '.join(message.split())}\n")
    stream.flush()
    return code


def _silence(out: TextIO) -> None:
    """Point a closed stdout at /dev/null so the interpreter's final flush does not complain."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def entry_point() -> None:
    sys.exit(main())
