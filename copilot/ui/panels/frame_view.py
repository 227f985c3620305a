"""The frame: the preview image, particle outlines coloured by size (or phases by class) and a scale bar.

When the daemon is not live the frame is greyed and says so over the image: the last frame is history, not now.
"""

from __future__ import annotations

from copilot.ui.qt import QtCore, QtGui, pg
from copilot.ui.raster import EDGE_RGB, PHASE_FILL_ALPHA, label_colours, render_outlines, size_colour, size_range
from copilot.ui.text import scale_bar

GREYED_OPACITY = 0.3


class ScaleBar(pg.ScaleBar):
    """pyqtgraph's scale bar with its label right-aligned to the bar, so a long label stays inside the view."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.text.setAnchor((1, 1))

    def updateBar(self):  # noqa: N802 (Qt naming)
        super().updateBar()
        self.text.setPos(0, 0)


class FrameView(pg.GraphicsLayoutWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(160, 160)
        self.vb = self.addViewBox(lockAspect=True, invertY=True, enableMouse=True)
        self.vb.setMenuEnabled(False)
        self.vb.setBackgroundColor("#000000")
        self.image = pg.ImageItem()
        self.outlines = pg.ImageItem()
        self.outlines.setZValue(5)
        self.markers = pg.ScatterPlotItem(pxMode=False, brush=None)
        self.markers.setZValue(6)
        for item in (self.image, self.outlines, self.markers):
            self.vb.addItem(item)
        self.bar = ScaleBar(size=100, width=6, brush="#ffffff", pen=pg.mkPen("#000000", width=1),
                            suffix="", offset=(-16, -14))
        self.bar.setParentItem(self.vb)
        self.bar.text.setColor("#ffffff")
        bf = QtGui.QFont()
        bf.setPointSize(12)
        bf.setBold(True)
        self.bar.text.setFont(bf)
        self.bar.text.fill = pg.mkBrush(0, 0, 0, 150)
        self.bar.hide()
        self.stale = pg.TextItem("", color="#ffffff", fill=pg.mkBrush(92, 26, 27, 220), anchor=(0.5, 0.5))
        self.stale.setZValue(10)
        self.stale.hide()
        self.vb.addItem(self.stale, ignoreBounds=True)
        sf = QtGui.QFont()
        sf.setPointSize(13)
        sf.setBold(True)
        self.stale.setFont(sf)
        self._outline_key = None
        self._frame_shape: tuple[int, int] | None = None
        self._st = None
        self.vb.sigResized.connect(self._resized)

    # -- coordinates (tests, snapshot checks) -------------------------------------------------------------------
    def frame_to_window(self, x_px: float, y_px: float) -> tuple[float, float]:
        """A point in frame pixels → the window's pixel coordinates (where it is drawn)."""
        scene = self.vb.mapViewToScene(QtCore.QPointF(x_px, y_px))
        p = self.mapFromScene(scene)
        g = self.mapTo(self.window(), p)
        return float(g.x()), float(g.y())

    def _resized(self, *_):
        self._outline_key = None
        if self._st is not None and self._st.doc is not None:
            self._paint_outlines(self._st)

    def paint(self, st, live: bool, liveness_text: str) -> None:
        self._st = st
        doc = st.doc
        H, W = doc.image.height_px, doc.image.width_px
        if self._frame_shape != (H, W):
            self._frame_shape = (H, W)
            self.vb.setRange(xRange=(0, W), yRange=(0, H), padding=0.0)
        prev = st.preview()
        if prev is not None:
            img = prev.image()
            self.image.setImage(img, levels=(0, 255), autoLevels=False)
            self.image.setRect(QtCore.QRectF(0, 0, img.shape[1] * prev.scale, img.shape[0] * prev.scale))
            self.image.show()
        else:
            self.image.hide()
        self._paint_outlines(st)
        self._paint_scale_bar(doc)
        self.set_live(live, liveness_text)

    def set_live(self, live: bool, text: str) -> None:
        opacity = 1.0 if live else GREYED_OPACITY
        for item in (self.image, self.outlines, self.markers):
            item.setOpacity(opacity)
        if live or self._frame_shape is None:
            self.stale.hide()
            return
        H, W = self._frame_shape
        self.stale.setText(text.replace(" — ", "\n"))
        self.stale.setPos(W / 2, H / 2)
        self.stale.show()

    def _paint_outlines(self, st) -> None:
        doc = st.doc
        H, W = doc.image.height_px, doc.image.width_px
        vw, vh = self.vb.width(), self.vb.height()
        k = min(vw / W, vh / H) if vw > 0 and vh > 0 else 1.0
        target = int(max(64, min(2048, max(H, W) * k * self.devicePixelRatioF())))
        key = (doc.frame_id, target, st.labels is not None)
        if key == self._outline_key:
            return
        self._outline_key = key
        if st.labels is not None:
            labels = st.labels
            n = int(labels.max(initial=0))
            lut = label_colours(doc, n)
            fill = PHASE_FILL_ALPHA if doc.measurements.task in ("phases", "grains") else 0
            rgba, s = render_outlines(labels, lut, doc.image.grid_frame_px, (H, W), target, fill_alpha=fill)
            self.outlines.setImage(rgba, levels=(0, 255), autoLevels=False)
            self.outlines.setRect(QtCore.QRectF(0, 0, rgba.shape[1] * s, rgba.shape[0] * s))
            self.outlines.show()
            self.markers.clear()
            return
        # No label mask on the wire (publish.send_labels = false): circles of the particle's ECD at its centroid.
        self.outlines.hide()
        p = doc.measurements.particles
        self.markers.clear()
        if p is None or not p.particles:
            return
        unit_per_px = doc.calibration.nm_per_px if doc.measurements.length_unit == "nm" else 1.0
        rng = size_range(doc)
        spots = []
        for q in p.particles:
            t = 0.5 if rng is None else (q.ecd - rng[0]) / (rng[1] - rng[0])
            colour = EDGE_RGB if q.touches_edge else tuple(int(v) for v in size_colour(t))
            spots.append({"pos": (q.centroid_x_px, q.centroid_y_px), "size": q.ecd / unit_per_px,
                          "pen": pg.mkPen(colour, width=2), "brush": None})
        self.markers.addPoints(spots)

    def _paint_scale_bar(self, doc) -> None:
        nm_per_px = doc.calibration.nm_per_px if doc.calibration.calibrated else None
        _, length_px, label = scale_bar(nm_per_px, doc.image.width_px)
        self.bar.size = length_px
        self.bar.text.setText(label)
        self.bar.show()
        self.bar.updateBar()
