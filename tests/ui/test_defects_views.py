"""Views of a defects document: `copilot top` shows swelling (with its interval), densities per class and the
predicted F1 per class; the overlay colours each defect by its class."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

from copilot.analysis import measure
from copilot.reliability.score import Assessor
from copilot.result import Outcome, build_result
from copilot.ui.raster import DEFECT_RGB, label_colours
from copilot.ui.text import fmt_num, fmt_signed
from copilot.ui.top import TopModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from test_defects import exact_segmentation, foil  # noqa: E402


def defects_doc():
    fm = measure(exact_segmentation(foil(4), {"foil_thickness_nm": 80.0}))
    rel, verdict, _ = Assessor().assess(fm)
    from dataclasses import replace

    rel = replace(rel, predicted_per_class={"cavity_f1": 0.93, "loop_f1": 0.81})
    return build_result(Outcome(fm, rel, verdict), {"total": 1.0}), fm


def test_top_shows_swelling_densities_and_predicted_f1_per_class():
    res, _ = defects_doc()
    doc = res.doc
    model = TopModel()
    model.add(doc)
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    console.print(model.render())
    text = console.export_text()
    d = doc.measurements.defects
    assert "swelling ΔV/V" in text and f"{fmt_num(100 * d.swelling)} %" in text and "95 % interval" in text
    cav = d.classes[0]
    assert f"cavities {fmt_num(cav.density_per_um2)}/µm²" in text and "loops " in text
    assert "cavity 0.93" in text and "loop 0.81" in text
    assert f"{cav.count} cavities" in text and "cavitys" not in text


def test_overlay_colours_defects_by_class():
    res, fm = defects_doc()
    n = int(fm.instances.max())
    lut = label_colours(res.doc, n)
    classes = fm.summary.defects.instance_classes
    assert tuple(lut[1 + int(np.argmax(classes == 1)), :3]) == DEFECT_RGB["cavity"]
    assert tuple(lut[1 + int(np.argmax(classes == 2)), :3]) == DEFECT_RGB["loop"]
    assert lut[0, 3] == 0 and (lut[1:, 3] == 255).all()


def test_top_shows_the_dose_and_swelling_against_it():
    from dataclasses import replace

    from copilot.analysis.series import SeriesTracker

    tracker, model = SeriesTracker(), TopModel()
    for i, dose in enumerate([0.5, 1.0, 1.5, 2.0]):
        seg = exact_segmentation(foil(20 + i, cavity_d50_nm=4.0 + 2 * i), {"foil_thickness_nm": 80.0, "dose_dpa": dose})
        seg = replace(seg, frame=replace(seg.frame, frame_id=str(i),
                                         acquired_at=seg.frame.acquired_at.replace(minute=i)))
        fm = measure(seg)
        rel, verdict, _ = Assessor().assess(fm)
        doc = build_result(Outcome(fm, rel, verdict, tracker.update(fm)), {"total": 1.0}).doc
        model.add(doc)
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    console.print(model.render())
    row = next(line for line in console.export_text().splitlines() if line.strip("│ ").startswith("dose"))
    trend = next(t for t in doc.series.trends if t.quantity == "swelling vs dose")
    assert f"{fmt_num(2.0)} · swelling {fmt_signed(trend.slope)} %/dose unit" in row and "95 % CI" in row
