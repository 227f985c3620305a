"""Following a running daemon without blocking the viewer: a background thread subscribes and keeps only the newest
result and preview per stream (older ones are dropped, not queued); the viewer takes what is newest on its own
timer and updates two layers in place. No Qt here: ``show_newest`` works on any napari viewer model."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from copilot.document.schema import ResultDocument
from copilot.napari_plugin.layers import image_layer, labels_layer

log = logging.getLogger(__name__)

IMAGE_LAYER = "copilot live"
LABELS_LAYER = "copilot live labels"


@dataclass
class Newest:
    """The newest result of a stream, with its labels and the preview of the same frame when it has arrived."""

    doc: ResultDocument
    labels: np.ndarray | None = None
    preview: np.ndarray | None = None


class LiveFeed:
    """Subscribes to ``result.`` and ``preview.`` on a background thread; :meth:`take` returns what is new."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", snapshot: str | None = "tcp://127.0.0.1:5556",
                 stream: str | None = None):
        self.endpoint, self.snapshot, self.stream = endpoint, snapshot, stream
        self.error: str | None = None
        self.received = 0
        self._newest: Newest | None = None
        self._previews: dict[str, tuple[str, np.ndarray]] = {}  # stream → (frame_id, pixels)
        self._taken: tuple[str, str, bool] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copilot-live", daemon=True)

    def start(self) -> "LiveFeed":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        from copilot.publish.preview import decode_preview
        from copilot.publish.subscriber import Subscriber

        suffix = self.stream or ""
        try:
            sub = Subscriber(self.endpoint, self.snapshot, (f"result.{suffix}", f"preview.{suffix}"),
                             snapshot_timeout_s=1.0)
        except Exception as exc:  # a bad endpoint: say so in the widget
            self.error = f"cannot subscribe to {self.endpoint}: {exc}"
            return
        with sub:
            while not self._stop.is_set():
                msg = sub.recv(timeout_s=0.2)
                if msg is None:
                    continue
                with self._lock:
                    self.received += 1
                    if msg.kind == "preview" and "preview" in msg.parts:
                        self._previews[msg.stream] = (msg.doc.get("frame_id"), decode_preview(msg.parts["preview"]))
                    elif msg.kind == "result":
                        labels = msg.parts.get("labels")
                        self._newest = Newest(msg.doc, None if labels is None else np.array(labels))

    def take(self) -> Newest | None:
        """The newest result (with the preview of its frame once that arrived), or None when nothing changed."""
        with self._lock:
            new = self._newest
            if new is None:
                return None
            preview = self._previews.get(new.doc.stream)
            if preview is not None and preview[0] == new.doc.frame_id:
                new.preview = preview[1]
            key = (new.doc.stream, new.doc.frame_id, new.preview is not None)
            if key == self._taken:
                return None
            self._taken = key
            return new


def show_newest(viewer, newest: Newest) -> None:
    """Put the newest frame (its preview) and labels into the viewer, replacing the previous ones in place."""
    doc = newest.doc
    if newest.preview is not None:
        _put(viewer, image_layer(doc, newest.preview, IMAGE_LAYER))
    if newest.labels is not None:
        _put(viewer, labels_layer(doc, newest.labels, LABELS_LAYER))


def _put(viewer, layer_data) -> None:
    data, kwargs, kind = layer_data
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        for key, value in kwargs.items():
            if key != "name":
                setattr(layer, key, value)
    else:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
