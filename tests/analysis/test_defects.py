"""Defect measurements on segmentations made from the simulator's exact masks: counts, densities, sizes and swelling
with the edge correction, against the simulator's truth; the document and the series carry them."""

from dataclasses import replace

import numpy as np
import pytest

from copilot.analysis import measure
from copilot.analysis.defects import cut_disc_diameters, edge_weights, poisson_interval, swelling, volume_nm3
from copilot.analysis.settings import AnalysisSettings
from copilot.frame import Frame
from copilot.inference.segmentation import Segmentation
from copilot.sim.irradiation import CLASS_NAMES, FoilParams, class_map, simulate_foil
from copilot.train.data import soft_class_targets
from copilot.train.defect_scores import frame_scores, pooled


def exact_segmentation(sim, meta=None, factor: int = 1) -> Segmentation:
    """What a perfect defects model would output: each class's coverage of every grid pixel."""
    shape = (sim.image.shape[0] // factor, sim.image.shape[1] // factor)
    probs = soft_class_targets(class_map(sim), shape, 3).astype(np.float32)
    frame = Frame(sim.image, sim.nm_per_px, stream="t", frame_id="1", origin="sim", meta=meta or {})
    return Segmentation(frame=frame, probabilities=probs, embedding=np.zeros(4, np.float32),
                        class_names=CLASS_NAMES, model_name="exact", model_version="0", backend="none",
                        frame_px_per_px=float(factor), task="defects")


def foil(seed: int, **kw):
    p = replace(FoilParams(size_px=512, nm_per_px=0.5, cavity_density_per_um2=1500, cavity_d50_nm=6.0,
                           cavity_min_nm=3.0, loop_density_per_um2=400), **kw)
    return simulate_foil(p, seed)


def test_exact_masks_give_f1_one_and_true_diameters():
    sim = foil(1)
    fm = measure(exact_segmentation(sim, {"foil_thickness_nm": 80.0}))
    s = pooled([frame_scores(fm, sim)])
    assert s["cavity_3nm_f1"] > 0.97 and s["loop_5nm_f1"] > 0.97
    d = fm.summary.defects
    truth = sorted(r["diameter_nm"] for r in sim.truth["defects"] if r["class"] == "cavity" and not r["touches_edge"])
    got = sorted(d.by_name("cavity").diameters)
    assert len(got) == len(truth)
    assert np.median(got) == pytest.approx(np.median(truth), rel=0.05)
    loops = sorted(r["diameter_nm"] for r in sim.truth["defects"] if r["class"] == "loop" and not r["touches_edge"]
                   and r["diameter_nm"] > 8)
    big = sorted(x for x in d.by_name("loop").diameters if x > 7.5)
    assert np.median(big) == pytest.approx(np.median(loops), rel=0.08)  # ellipse major axis


def test_swelling_and_density_match_the_truth_over_frames():
    est, true, dens, dtrue = [], [], [], []
    for seed in range(6):
        sim = foil(seed)
        fm = measure(exact_segmentation(sim, {"foil_thickness_nm": sim.truth["foil_thickness_nm"]}))
        d = fm.summary.defects
        est.append(d.swelling)
        true.append(sim.truth["swelling"])
        dens.append(d.by_name("cavity").density_per_um2)
        dtrue.append(sim.truth["density_per_um2"]["cavity"])
        assert d.swelling_ci.low <= d.swelling <= d.swelling_ci.high
        assert d.by_name("cavity").density_ci.low < d.by_name("cavity").density_per_um2
    assert sum(est) / sum(true) == pytest.approx(1.0, abs=0.1)
    assert sum(dens) / sum(dtrue) == pytest.approx(1.0, abs=0.1)


def test_each_frame_swelling_counts_the_cavities_whose_centre_is_inside():
    """With exact masks every frame's swelling is the truth's (cavities with their centre in the frame), large
    cavities cut by the edge included: no weights that make one frame swing."""
    errors = []
    for seed in range(6):
        for d50, density in ((6.0, 1500), (20.0, 300)):
            sim = foil(seed, cavity_d50_nm=d50, cavity_density_per_um2=density)
            fm = measure(exact_segmentation(sim, {"foil_thickness_nm": sim.truth["foil_thickness_nm"]}))
            errors.append(abs(fm.summary.defects.swelling / sim.truth["swelling"] - 1))
    assert np.median(errors) < 0.02 and np.mean(np.array(errors) < 0.05) >= 0.8


def test_cut_disc_diameter_from_visible_area_and_chord():
    yy, xx = np.mgrid[0:200, 0:200] + 0.5
    got, want = [], []
    for r in (6.0, 15.0, 40.0):
        for inside in (-0.4, -0.05, 0.1, 0.5, 0.9):  # centre's distance inside the edge, in radii
            disc = (xx - 100) ** 2 + (yy - inside * r) ** 2 <= r * r
            d = cut_disc_diameters(np.array([float(disc.sum())]), np.array([float(disc[0].sum())]))[0]
            if inside < 0:
                assert np.isnan(d)
            else:
                got.append(d)
                want.append(2 * r)
    assert np.allclose(got, want, rtol=0.08) and np.median(np.abs(np.array(got) / want - 1)) < 0.03


def test_thickness_from_config_wins_and_missing_thickness_says_so():
    sim = foil(2)
    seg = exact_segmentation(sim, {"foil_thickness_nm": 80.0})
    a = measure(seg, AnalysisSettings(foil_thickness_nm=160.0)).summary.defects
    b = measure(seg).summary.defects
    assert a.thickness_source == "config" and b.thickness_source == "metadata"
    assert a.swelling == pytest.approx(b.swelling / 2, rel=0.01)
    none = measure(exact_segmentation(sim)).summary.defects
    assert none.swelling is None and "thickness" in none.note and none.by_name("cavity").density_per_um2 > 0


def test_formulas():
    assert swelling(volume_nm3(np.array([10.0]), np.ones(1)), 100.0 * 100.0, 50.0) == pytest.approx(
        (np.pi / 6 * 1000) / (5e5 - np.pi / 6 * 1000))
    assert edge_weights(np.array([0.0, 50.0, 100.0]), 100.0, 100.0).tolist() == [1.0, 4.0, 0.0]
    lo, hi = poisson_interval(10)
    assert lo == pytest.approx(4.795, abs=0.01) and hi == pytest.approx(18.39, abs=0.02)


def test_document_and_series_carry_the_defects():
    from copilot.analysis.series import SeriesTracker
    from copilot.document.schema import ResultDocument
    from copilot.reliability.score import Assessor
    from copilot.result import Outcome, build_result

    tracker = SeriesTracker()
    for i, dose in enumerate([0.5, 1.0, 1.5, 2.0]):
        sim = foil(10 + i, cavity_d50_nm=4.0 + 2 * i)
        seg = exact_segmentation(sim, {"foil_thickness_nm": 80.0, "dose_dpa": dose})
        seg = replace(seg, frame=replace(seg.frame, frame_id=str(i),
                                         acquired_at=seg.frame.acquired_at.replace(minute=i)))
        fm = measure(seg)
        series = tracker.update(fm)
        rel, verdict, _ = Assessor().assess(fm)
        doc = build_result(Outcome(fm, rel, verdict, series), {"total": 1.0}).doc
    back = ResultDocument.from_json(doc.to_json())
    d = back.measurements.defects
    assert back.measurements.task == "defects" and d.dose == 2.0 and d.swelling > 0
    assert [c.name for c in d.classes] == ["cavity", "loop"]
    trends = {t.quantity: t for t in back.series.trends}
    assert {"swelling", "density:cavity", "swelling vs dose"} <= set(trends)
    assert trends["swelling vs dose"].slope > 0 and trends["swelling vs dose"].unit == "%/dose unit"


def _disc_probabilities(shape, discs, cls=1, value=1.0):
    """Class probabilities (background, cavity, loop) with the given discs painted in class ``cls``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.zeros((3,) + shape, np.float32)
    p[0] = 1.0
    for cy, cx, r in discs:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        p[:, inside] = 0.0
        p[cls, inside] = value
        p[0, inside] = 1.0 - value
    return p


def test_a_region_the_model_is_unsure_of_is_not_a_defect():
    from copilot.analysis.defect_instances import defect_instances

    sure = _disc_probabilities((64, 64), [(16, 16, 6)])
    unsure = _disc_probabilities((64, 64), [(44, 44, 6)], value=0.6)  # arg-max still cavity
    p = np.where(unsure[0] < 1, unsure, sure)
    lab, cls = defect_instances(p, CLASS_NAMES)
    assert lab.max() == 1 and lab[16, 16] == 1 and lab[44, 44] == 0 and cls.tolist() == [1]
    lab, _ = defect_instances(p, CLASS_NAMES, min_confidence=0.5)
    assert lab.max() == 2


def test_a_bitten_cavity_is_sized_whole_and_two_run_together_are_not_filled():
    from copilot.analysis.defects import diameters_px

    r = 15.0
    whole = _disc_probabilities((80, 80), [(40, 40, r)])
    bitten = whole.copy()
    bitten[:, 28:40, 36:44] = np.array([1.0, 0, 0], np.float32)[:, None, None]  # a notch from the top edge inwards
    pair = _disc_probabilities((80, 120), [(40, 40, r), (40, 40 + 2 * r + 1, r)])  # touching: 0.88 solid
    from copilot.analysis.defect_instances import defect_instances

    def ecd(p):
        lab, cls = defect_instances(p, CLASS_NAMES)
        return diameters_px(p, lab, cls, CLASS_NAMES.index("loop"))

    assert ecd(whole)[0] == pytest.approx(2 * r, rel=0.02)
    assert ecd(bitten)[0] == pytest.approx(2 * r, rel=0.03)  # painted area alone: 2r·0.93
    two = ecd(pair)
    assert len(two) == 1 and two[0] == pytest.approx(2 * np.sqrt(2) * r, rel=0.03)  # the painted area, no hull


def test_the_irradiation_preset_writes_defects_csv_and_frame_columns(tmp_path):
    """`copilot analyze --config configs/tem-irradiation-defects.toml` (the README's preset, the shipped defects-tem):
    every sized defect in defects.csv, and each frame's counts, densities, swelling and intervals in frames.csv, as in
    its document; an uncalibrated frame lists sizes in pixels only."""
    import csv
    import json
    from pathlib import Path

    import tifffile

    from copilot.cli import main
    from copilot.sim.tiff import write_tiff

    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(2):
        write_tiff(acq / f"foil_{i}.tif", foil(40 + i, cavity_d50_nm=8.0))
    tifffile.imwrite(acq / "plain.tif", foil(42, cavity_d50_nm=8.0).image)  # no calibration at all
    out = tmp_path / "out"
    preset = Path(__file__).resolve().parents[2] / "configs" / "tem-irradiation-defects.toml"
    assert main(["analyze", str(acq), "--config", str(preset), "--out", str(out)]) == 0
    docs = {d["frame_id"]: d for d in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    rows = list(csv.DictReader(open(out / "defects.csv")))
    frames = {f["frame_id"]: f for f in csv.DictReader(open(out / "frames.csv"))}
    assert set(docs) == set(frames) == {"foil_0", "foil_1", "plain"}
    assert (out / "trend.png").exists() and not (out / "dose.png").exists()  # swelling over time; no dose here
    for fid, d in docs.items():
        s = d["measurements"]["defects"]
        sized = {c["name"]: c["diameters"] for c in s["classes"]}
        mine = [r for r in rows if r["frame_id"] == fid]
        for name in ("cavity", "loop"):
            listed = [r for r in mine if r["defect_class"] == name]
            assert len(listed) == len(sized[name])
            unit = "diameter_nm" if d["calibration"]["nm_per_px"] else "diameter_px"
            assert [float(r[unit]) for r in listed] == pytest.approx(sized[name], rel=1e-5)
        f, cavity = frames[fid], s["classes"][0]
        assert int(f["cavity_count"]) == cavity["count"] > 0 and int(f["loop_count"]) == s["classes"][1]["count"]
        if fid == "plain":
            assert d["measurements"]["length_unit"] == "px" and f["swelling"] == ""
            assert f["cavity_density_per_um2"] == ""
            assert all(r["diameter_nm"] == "" and float(r["diameter_px"]) > 0 for r in mine)
            continue
        nm = d["calibration"]["nm_per_px"]
        assert all(float(r["diameter_px"]) == pytest.approx(float(r["diameter_nm"]) / nm, rel=1e-5) for r in mine)
        assert float(f["swelling"]) == pytest.approx(s["swelling"]) and float(f["foil_thickness_nm"]) == 80.0
        assert float(f["swelling_ci_low"]) <= float(f["swelling"]) <= float(f["swelling_ci_high"])
        density = float(f["cavity_density_per_um2"])
        assert float(f["cavity_density_ci_low"]) < density < float(f["cavity_density_ci_high"])
        assert float(f["cavity_predicted_f1"]) == pytest.approx(d["reliability"]["predicted_per_class"]["cavity_f1"])
