"""User errors on the command line: one line naming what to change, exit code 2; ``-v`` adds the traceback.

An error is a *user* error when the person can fix it: a missing model or file, a bad config value, a port in use,
a folder that cannot be read or written. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import traceback

from copilot.errors import CopilotError

EXIT_USER_ERROR = 2


def user_message(exc: BaseException) -> str | None:
    """The one line for a user error, or None when ``exc`` is not one."""
    if isinstance(exc, CopilotError):
        return str(exc)
    addr = re.search(r"addr='([^']*)'", str(exc))
    if type(exc).__module__.startswith("zmq") and addr:
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            return (f"{addr.group(1)} is already in use (another daemon?): stop it, or choose other ports with "
                    "publish.pub_endpoint / publish.snapshot_endpoint / source.endpoint in the config")
        return (f"{addr.group(1)!r} is not a usable ZeroMQ endpoint ({str(exc).split(' (addr=')[0]}): write it as "
                "tcp://HOST:PORT or ipc://PATH")
    if isinstance(exc, OSError):
        if exc.filename is None:
            return str(exc) or type(exc).__name__
        reason = {FileNotFoundError: "no such file or folder", PermissionError: "permission denied",
                  NotADirectoryError: "not a folder", IsADirectoryError: "is a folder, expected a file",
                  FileExistsError: "already exists and is not a folder"}.get(type(exc), exc.strerror or type(exc).__name__)
        return f"{exc.filename}: {reason}"
    return None


def report_user_error(exc: BaseException, prog: str, *, verbose: bool = False) -> int:
    """Print ``exc`` as one line (with its traceback first when ``verbose``) and return 2; re-raise a bug."""
    message = user_message(exc)
    if message is None:
        raise exc
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def add_verbose(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """``-v/--verbose`` on the parser and on every sub-command (so ``copilot analyze -v …`` works too)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="debug logging, and the traceback of an error")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_verbose(sub, top=False)
