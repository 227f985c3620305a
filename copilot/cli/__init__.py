"""The ``copilot`` command: the parser and small sub-commands in ``commands.py``, larger ones in their own module."""

import os

# One BLAS thread, set before numpy loads: the daemon's cores belong to ONNX Runtime's threads and the measure
# workers, and OpenBLAS would start a thread per core for any matrix product and keep them spinning between calls
# (measured on 2 cores: two phases measure workers 1.17× the frames/s of one with them, 2.02× without). An
# operator's own OPENBLAS_NUM_THREADS wins; torch (training, adaptation) has its own threads and ignores it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from copilot.cli.commands import main  # noqa: E402

__all__ = ["main"]
