"""The ``copilot`` command: one module per sub-command, registered in ``main.py``."""

from copilot.cli.main import main

__all__ = ["main"]
