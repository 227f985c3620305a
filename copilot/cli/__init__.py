"""The ``copilot`` command: the parser and small sub-commands in ``commands.py``, larger ones in their own module."""

from copilot.cli.commands import main

__all__ = ["main"]
