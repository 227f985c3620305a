"""Scoring defects per class with a size floor: what is below the floor neither counts for nor against the model."""

import numpy as np

from copilot.train.defect_scores import class_counts, f1, pooled
from copilot.train.defects_reliability import frame_targets


def test_floor_drops_small_truths_and_their_matches_and_small_false_positives():
    truth = np.zeros((20, 20), int)
    truth[1:5, 1:5] = 1   # big cavity
    truth[8:10, 8:10] = 2  # small cavity (2 nm)
    truth[14:18, 14:18] = 3  # loop
    t_cls = np.array([0, 1, 1, 2])
    t_d = np.array([0, 6.0, 2.0, 6.0])
    pred = np.zeros((20, 20), int)
    pred[1:5, 1:5] = 1     # matches the big cavity
    pred[8:10, 8:10] = 2   # matches the small one: ignored above the floor
    pred[12:13, 1:2] = 3   # small false positive (1 nm): ignored above the floor
    pred[1:5, 12:16] = 4   # big false positive
    p_cls = np.array([1, 1, 1, 1])
    p_d = np.array([6.0, 2.0, 1.0, 6.0])
    assert class_counts(pred, p_cls, p_d, truth, t_cls, t_d, 1, 1, 0.0) == (2, 4, 2)
    assert class_counts(pred, p_cls, p_d, truth, t_cls, t_d, 1, 1, 3.0) == (1, 2, 1)
    assert class_counts(pred, p_cls, p_d, truth, t_cls, t_d, 2, 2, 0.0) == (0, 0, 1)  # the loop was missed


def test_pooling_and_frame_targets():
    assert f1(0, 0, 0) == 1.0 and f1(1, 2, 2) == 0.5
    rows = [{"cavity_tp": 3, "cavity_pred": 4, "cavity_truth": 4, "swelling_true": 0.01, "swelling_pred": 0.011},
            {"cavity_tp": 1, "cavity_pred": 1, "cavity_truth": 2, "swelling_true": 0.02, "swelling_pred": 0.018}]
    p = pooled(rows)
    assert p["cavity_f1"] == 2 * 4 / 11 and p["swelling_pooled_ratio"] == (0.011 + 0.018) / 0.03
    t = frame_targets({"cavity_3nm_tp": 2, "cavity_3nm_pred": 2, "cavity_3nm_truth": 4,
                       "loop_5nm_tp": 0, "loop_5nm_pred": 0, "loop_5nm_truth": 0})
    assert t["cavity_recall"] == 0.5 and t["loop_f1"] == 1.0 and t["f1"] == 4 / 6
