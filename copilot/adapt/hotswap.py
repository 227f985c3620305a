"""Hot swap: the running daemon loads a newly promoted (or rolled back) model between two frames, no restart.

:class:`ModelWatch` re-resolves the configured model on the search path at most every ``interval_s``; when the
folder found or its card changed and the model's sha256 differs from the backend in use, it loads the new backend
(the daemon's own loader: same backend choice, limits and verification). A model that fails to load is logged and
the current backend keeps running.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


class ModelWatch:
    def __init__(self, model: str | Path, load: Callable[[], object], current_sha256: str, interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.model = model
        self.load = load
        self.sha256 = current_sha256
        self.interval_s = interval_s
        self.clock = clock
        self._checked = clock()
        self._key: tuple | None = self._resolve()
        self.swaps = 0

    def _resolve(self) -> tuple | None:
        from copilot.inference.locate import find_model

        try:
            folder = find_model(self.model)
            st = (folder / "card.json").stat()
        except Exception:  # a model folder being replaced right now: look again next time
            return None
        return str(folder), st.st_mtime_ns, st.st_size

    def poll(self):
        """A new backend when the model on the search path changed since the last call, else None."""
        now = self.clock()
        if now - self._checked < self.interval_s:
            return None
        self._checked = now
        key = self._resolve()
        if key is None or key == self._key:
            return None
        self._key = key
        from copilot.inference.card import load_card

        try:
            card, _ = load_card(self.model)
            if card.model_sha256 == self.sha256:
                return None
            backend = self.load()
        except Exception as exc:
            log.warning("model %s changed on disk but could not be loaded (keeping the current one): %s",
                        self.model, exc)
            return None
        self.sha256 = backend.card.model_sha256
        self.swaps += 1
        log.info("hot swap: now %s %s from %s", backend.card.name, backend.card.version, key[0])
        return backend
