"""``python -m copilot.cli ...`` is the ``copilot`` command."""

import sys

from copilot.cli.commands import main

sys.exit(main())
