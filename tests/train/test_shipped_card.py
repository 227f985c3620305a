"""The shipped engines: cards validate, sha256 matches model.onnx, the graph has the card's names and shapes, and
the card carries held-out metrics per domain group."""

import numpy as np
import pytest

from copilot.inference.card import load_card, sha256_of
from copilot.inference.locate import ENGINES_DIR

EXPECTED = {
    "particles-stem": ("particles", ["background", "particle", "boundary"]),
    "phases-sem": ("phases", ["matrix", "second-phase", "pore"]),
    "defects-tem": ("defects", ["background", "cavity", "loop"]),
    "grains-sem": ("grains", ["grain", "boundary"]),
}


def _shipped(name):
    return pytest.param(name, marks=pytest.mark.skipif(not (ENGINES_DIR / name / "card.json").is_file(),
                                                        reason=f"{name} not trained yet"))


ENGINES = [_shipped(n) for n in EXPECTED]


@pytest.mark.parametrize("name", ENGINES)
def test_card_validates_and_sha_matches(name):
    card, folder = load_card(name, verify_sha256=True)
    assert folder == ENGINES_DIR / name
    assert sha256_of(folder / "model.onnx") == card.model_sha256
    task, classes = EXPECTED[name]
    assert card.name == name and card.task == task
    assert card.class_names == classes
    lo, hi = card.trained_nm_per_px_range
    assert lo < hi and lo <= card.working_nm_per_px <= hi
    ref = card.embedding_reference
    assert ref is not None and len(ref.mean) == len(ref.std) == card.outputs.embedding_dim
    assert 100 <= len(ref.samples) and all(len(s) == card.outputs.embedding_dim for s in ref.samples)
    assert card.training_command.startswith(f"python -m copilot.train {name}")


@pytest.mark.parametrize("name", ENGINES)
def test_card_has_heldout_metrics_per_group(name):
    from copilot.sim.domains import groups_for

    card, _ = load_card(name)
    if "heldout:in-domain" not in card.metrics:
        pytest.skip("card predates per-group metrics")
    for group in groups_for(card.task):
        m = card.metrics[f"heldout:{group}"]
        assert isinstance(m, dict)
        key = {"particles": "object_f1", "defects": "cavity_3nm_f1", "grains": "boundary_f1"}.get(
            card.task, "fraction_error_pp_max_class_mean")
        assert key in m
    assert "ort_cpu2_latency_s_1024px" in card.metrics


def test_particles_card_keeps_the_reliability_regressor():
    if not (ENGINES_DIR / "particles-stem" / "card.json").is_file():
        pytest.skip("particles-stem not trained yet")
    card, folder = load_card("particles-stem")
    if card.reliability_regressor is not None:
        assert (folder / card.reliability_regressor).is_file()
    for key in ("pixel_miou", "object_f1_iou50", "d50_rel_error"):
        assert key in card.metrics


@pytest.mark.parametrize("name", ENGINES)
def test_onnx_graph_matches_card(name):
    ort = pytest.importorskip("onnxruntime")
    card, folder = load_card(name)
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == card.outputs.input
    names = [o.name for o in sess.get_outputs()]
    assert names == [card.outputs.probabilities, card.outputs.embedding]
    m = card.tiling.multiple_of
    x = np.zeros((1, 1, 8 * m, 12 * m), np.float32)
    probs, emb = sess.run(None, {card.outputs.input: x})
    assert probs.shape == (1, len(card.class_names), 8 * m, 12 * m)
    assert emb.shape == (1, card.outputs.embedding_dim)
