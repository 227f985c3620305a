"""EDS inclusions where people look: `copilot top` and the overlay list the classes with counts per mm², and the
exports write inclusions.csv (one row per inclusion) and the inclusion columns of frames.csv."""

from __future__ import annotations

import csv
import io
import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from rich.console import Console  # noqa: E402

from copilot.document.schema import (Inclusion, InclusionClassCount, InclusionSummary, Measurements,  # noqa: E402
                                     ParticleSummary, Verdict)
from copilot.exports import ResultWriter  # noqa: E402
from copilot.result import Result  # noqa: E402
from copilot.ui.text import inclusion_text  # noqa: E402
from copilot.ui.top import TopModel  # noqa: E402
from tests.publish.conftest import make_doc  # noqa: E402


def inclusions_doc(n: int = 1, **summary):
    incs = [Inclusion(id=1, inclusion_class="oxide", confidence=0.97, area_px=12, centroid_x_px=5, centroid_y_px=6,
                      counts=4000, fractions={"O": 0.55, "Al": 0.40}, fraction_sigma={"O": 0.03, "Al": 0.02}),
            Inclusion(id=2, inclusion_class="sulfide", confidence=0.8, area_px=30, centroid_x_px=20, centroid_y_px=9,
                      counts=9000, fractions={"Mn": 0.5, "S": 0.45}, fraction_sigma={})]
    fields = dict(basis="atomic", note="semi-quantitative", eds_shape=[50, 50], counts_per_px=120.0,
                  field_area_mm2=0.0025,
                  classes=[InclusionClassCount(name="oxide", count=1, area_px=12, count_per_mm2=400.0,
                                               area_fraction=0.0048),
                           InclusionClassCount(name="sulfide", count=1, area_px=30, count_per_mm2=400.0,
                                               area_fraction=0.012),
                           InclusionClassCount(name="nitride", count=0, area_px=0, count_per_mm2=0.0,
                                               area_fraction=0.0)],
                  inclusions=incs)
    fields.update(summary)
    m = Measurements(task="particles", length_unit="nm", particles=ParticleSummary(count=2, count_edge=0, count_sized=2),
                     inclusions=InclusionSummary(**fields))
    return make_doc("sem-eds", n, measurements=m)


def test_inclusion_text_lists_found_classes_with_density():
    assert inclusion_text(inclusions_doc()) == "2 inclusions: oxide 1 (400/mm²), sulfide 1 (400/mm²)"
    assert inclusion_text(make_doc()) == ""  # no EDS: nothing to say
    assert inclusion_text(inclusions_doc(classes=[], inclusions=[])) == "no inclusions in the EDS map"
    gone = inclusions_doc(unavailable="map.bcf: no EDS signal", classes=[], inclusions=[])
    assert inclusion_text(gone) == "EDS not analysed: map.bcf: no EDS signal"


def test_top_shows_inclusions_and_withholds_them_on_fail():
    model = TopModel()
    model.add(inclusions_doc())
    console = Console(record=True, width=110, file=io.StringIO(), color_system=None)
    console.print(model.render())
    text = console.export_text()
    assert "inclusions" in text and "2 inclusions: oxide 1 (400/mm²), sulfide 1 (400/mm²)" in text
    failed = inclusions_doc(2).model_copy(update={"verdict": Verdict(level="fail", reasons=["out of domain"])})
    model.add(failed)
    console = Console(record=True, width=110, file=io.StringIO(), color_system=None)
    console.print(model.render())
    text = console.export_text()
    assert "oxide 1" not in text and "withheld" in text


def test_exports_write_inclusions_csv_and_frame_columns(tmp_path):
    w = ResultWriter(tmp_path)
    w(Result(doc=inclusions_doc()))
    w(Result(doc=make_doc("sem-eds", 2)))  # a frame without EDS adds no inclusion rows
    offsets = w.offsets()
    w.close()
    rows = list(csv.DictReader(open(tmp_path / "inclusions.csv", newline="")))
    assert [(r["inclusion_id"], r["inclusion_class"]) for r in rows] == [("1", "oxide"), ("2", "sulfide")]
    assert rows[0]["composition"] == "O=0.550±0.030;Al=0.400±0.020" and rows[1]["composition"] == "Mn=0.500;S=0.450"
    assert float(rows[0]["area_um2"]) == pytest.approx(12 * 0.0025e6 / 2500)
    frames = list(csv.DictReader(open(tmp_path / "frames.csv", newline="")))
    assert frames[0]["inclusions"] == "2" and float(frames[0]["inclusions_per_mm2"]) == pytest.approx(800.0)
    assert json.loads(frames[0]["inclusion_classes"]) == {"oxide": 1, "sulfide": 1}
    assert frames[1]["inclusions"] == ""
    assert ResultWriter.can_resume(tmp_path, offsets)
    # a folder written by a version with other frames.csv columns is not continued (rows would not line up)
    original = (tmp_path / "frames.csv").read_bytes()
    (tmp_path / "frames.csv").write_bytes(original.replace(b",inclusion_classes", b",inclusion_class_counts"))
    assert not ResultWriter.can_resume(tmp_path, offsets)
    # a folder from a version before inclusions.csv continues, and the file is created with its header
    (tmp_path / "frames.csv").write_bytes(original)
    (tmp_path / "inclusions.csv").unlink()
    older = {f: n for f, n in offsets.items() if f != "inclusions.csv"}
    assert ResultWriter.can_resume(tmp_path, older)
    ResultWriter(tmp_path, resume=older).close()
    assert (tmp_path / "inclusions.csv").read_text().startswith("frame_id,inclusion_id,inclusion_class")


def test_overlay_shows_the_inclusions_line():
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from tests.ui.test_overlay import window_showing

    with window_showing(inclusions_doc()) as win:
        assert "2 inclusions: oxide 1 (400/mm²)" in win.panels["sem-eds"].numbers.stats.text()
