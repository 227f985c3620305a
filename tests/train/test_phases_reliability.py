"""The phases-sem reliability regressor: per-frame targets, the recipe on the shipped model, the verdict's reason."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.train.phases_reliability import FRACTION_ERROR_CAP, TARGETS, pixel_scores


def test_pixel_scores_ignore_a_class_of_a_few_stray_pixels():
    truth = np.zeros((100, 100), np.int64)
    truth[:, :40] = 2
    pred = truth.copy()
    pred[0, 50:60] = 1  # 10 stray pixels of a class the frame does not hold: 0.1 % of it
    s = pixel_scores(pred, truth, 3)
    assert s["f1"] > 0.99 and s["precision"] > 0.99 and s["recall"] > 0.99
    pred[:30, 50:] = 1  # now 15 % of the frame painted as a phase that is not there
    s = pixel_scores(pred, truth, 3)
    assert s["precision"] < 0.7 and s["f1"] < 0.7 and s["recall"] > 0.8  # the matrix is still all found…
    # …except where it was painted over
    assert s["recall"] == pytest.approx((1.0 + (6000 - 1500) / 6000) / 2)


def test_phases_regressor_recipe_and_the_verdict_on_a_predicted_fraction_error(tmp_path):
    """The recipe on the shipped model (a copy): table rows, ONNX regressor named in the card; the assessor then
    predicts a pixel F1 and a fraction error (≥ 0, not clipped to 1), and the verdict warns on a large one."""
    pytest.importorskip("skl2onnx")
    from copilot.analysis import measure
    from copilot.frame import Frame
    from copilot.reliability.score import Assessor
    from copilot.reliability.settings import VerdictThresholds
    from copilot.reliability.task_checks import phase_reasons
    from copilot.sim.domains import sample_domain_frame
    from copilot.train import phases_reliability as rel

    shipped = Path(__file__).resolve().parents[2] / "engines" / "phases-sem"
    folder = tmp_path / "phases-sem"
    shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("reliability.*"))
    rows, _ = rel.collect(str(folder), per_group=1, seed=0, size_px=192, log=None)
    assert len(rows) >= 6 and set(TARGETS) <= set(rows[0]) and "shift_distance" in rows[0]
    assert all(0.0 <= r["f1"] <= 1.0 and 0.0 <= r["fraction_error"] <= FRACTION_ERROR_CAP for r in rows)
    for i, r in enumerate(rows):  # spread the error so the trees have something to fit
        r["fraction_error"] = 12.0 * (i % 2)
    rel.fit_and_write(str(folder), rows * 3, "test")
    card, _ = load_card(folder)
    assert card.reliability_regressor == "reliability.onnx"
    calibration = json.loads((folder / "reliability.json").read_text())
    assert 0.0 <= calibration["metrics"]["f1_mae_grouped"] <= 1.0  # what the adaptation gate reads
    sim = sample_domain_frame("in-domain", np.random.default_rng(5), 192, task="phases")
    fm = measure(OrtBackend(card, folder, threads=1).segment(Frame(sim.image, sim.nm_per_px, "s", "1", "sim")))
    r = Assessor(card, folder).frame(fm)
    assert r.predicted_f1 is not None and 0.0 <= r.predicted_f1 <= 1.0
    assert set(r.predicted_per_class) == {"fraction_error"} and r.predicted_per_class["fraction_error"] >= 0.0
    t = VerdictThresholds()
    assert any("predicted phase-fraction error ±9 pp" in why for _, why in phase_reasons(fm, t, {"fraction_error": 9}))
    assert not any("predicted phase-fraction" in why for _, why in phase_reasons(fm, t, {"fraction_error": 2.0}))


def test_recipe_writes_a_table_alone_then_fits_on_two_tables(tmp_path):
    """``--no-fit`` simulates and writes the table only; ``--refit --add-table`` fits on both tables (frames of two
    sizes), and the calibration says how it was made."""
    pytest.importorskip("skl2onnx")
    from copilot.train import phases_reliability as rel
    from copilot.train.reliability import read_table

    shipped = Path(__file__).resolve().parents[2] / "engines" / "phases-sem"
    folder = tmp_path / "phases-sem"
    shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("reliability.*"))
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    for table, size in ((small, 128), (large, 192)):
        assert rel.main([str(folder), "--per-group", "1", "--size", str(size), "--table", str(table), "--no-fit"]) == 0
    assert small.exists() and large.exists() and not (folder / "reliability.onnx").exists()
    assert rel.main([str(folder), "--refit", "--table", str(small), "--add-table", str(large)]) == 0
    calibration = json.loads((folder / "reliability.json").read_text())
    n = len(read_table(small)) + len(read_table(large))
    assert calibration["metrics"]["frames"] == n > 0
    assert "--add-table" in calibration["training_command"] and load_card(folder)[0].reliability_regressor
