"""``python -m copilot.cli ...`` is the ``copilot`` command."""

import sys

from copilot.cli.main import main

sys.exit(main())
