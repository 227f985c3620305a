"""Grains in the views: `copilot top` shows G with its interval and the grain count; the overlay fills grains by
size (edge-cut grains off the scale) and its legend says so."""

from __future__ import annotations

import io
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from rich.console import Console  # noqa: E402

from copilot.document.schema import Grain, GrainSummary, Interval, Measurements  # noqa: E402
from copilot.ui.raster import EDGE_RGB, label_colours, render_outlines  # noqa: E402
from copilot.ui.top import TopModel  # noqa: E402
from tests.publish.conftest import make_doc  # noqa: E402


def grains_doc():
    grains = [Grain(id=1, centroid_x_px=10, centroid_y_px=10, area_um2=4.0, ecd_um=2.26, g=14.0),
              Grain(id=2, centroid_x_px=40, centroid_y_px=30, area_um2=64.0, ecd_um=9.0, g=10.0)]
    summary = GrainSummary(count=2, count_edge=1, analysed_area_mm2=0.0003, grains_per_mm2=8333.0,
                           g_planimetric=10.12, g_planimetric_ci=Interval(low=9.8, high=10.5, method="E112"),
                           g_intercept=10.4, grains=grains)
    return make_doc("sem-grains", 1, measurements=Measurements(task="grains", length_unit="nm", grains=summary))


def labels() -> np.ndarray:
    lab = np.full((64, 80), 3, np.uint16)  # grain 3: cut by the edge
    lab[2:20, 2:20], lab[22:44, 26:60] = 1, 2
    return lab


def test_top_shows_g_interval_and_counts():
    model = TopModel()
    model.add(grains_doc())
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(model.render())
    text = console.export_text()
    assert "G " in text and "10.1" in text and "95 % interval 9.80–10.5" in text
    assert "2 grains, 1 cut by the edge, G intercept 10.40" in text and "grains/mm²" in text


def test_grains_are_filled_by_size():
    doc = grains_doc()
    lut = label_colours(doc, 3)
    assert tuple(lut[3, :3]) == EDGE_RGB and lut[0, 3] == 0
    assert lut[1, 2] > lut[1, 0] and lut[2, 0] > lut[2, 2]  # small grain blue, large grain red
    rgba, _ = render_outlines(labels(), lut, 1.0, (64, 80), target_px=80, fill_alpha=90)
    assert rgba[10, 10, 3] == 90 and tuple(rgba[10, 10, :3]) == tuple(lut[1, :3])


def test_overlay_renders_a_grains_frame():
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from copilot.ui.client import Client
    from tests.ui.test_overlay import window_showing

    with window_showing(grains_doc(), {"labels": labels()}) as win:
        numbers = win.panels["sem-grains"].numbers
        assert "2" in numbers.count.text() and "grains" in numbers.count.text()
        assert "fill colour = ECD" in numbers.legend.text() and "µm" in numbers.legend.text()
        assert win.panels["sem-grains"].frame.outlines.image is not None
    assert isinstance(Client, type)
