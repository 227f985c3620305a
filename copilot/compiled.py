"""Optional numba compilation of a module's plain-Python kernels, shared by every package that has some
(``copilot.analysis.kernels``, ``copilot.reliability.filters``, ``copilot.inference.segmentation``).

numba (an optional dependency, in the ``cpu``, ``gpu``, ``eds`` and ``test`` extras) compiles a kernel on first use
(cached on disk); without numba, or with ``COPILOT_NUMBA=0`` in the environment, ``compiled`` gives None and the
caller runs its numpy code, which gives the same arrays bit for bit (tests hold the two to equality). numba is
imported on first call, never at import time.
"""

from __future__ import annotations

import os

_COMPILED: dict = {}


def compiled(name: str, namespace: dict):
    """The compiled function ``name`` of a module's ``namespace`` (its ``globals()``), or None (numba missing, or
    ``COPILOT_NUMBA=0``)."""
    if os.environ.get("COPILOT_NUMBA", "1") == "0":
        return None
    key = (namespace["__name__"], name)
    if key not in _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED[key] = None
        else:
            try:
                _COMPILED[key] = numba.njit(cache=True, nogil=True)(namespace[name])
            except RuntimeError:  # no writable cache location (a read-only install): compiled on each start
                _COMPILED[key] = numba.njit(nogil=True)(namespace[name])
    return _COMPILED[key]
