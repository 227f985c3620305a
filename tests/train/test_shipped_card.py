"""The shipped engine: card validates, sha256 matches model.onnx, the graph has the card's names and shapes."""

import numpy as np
import pytest

from copilot.inference.card import ENGINES_DIR, load_card

FOLDER = ENGINES_DIR / "particles-stem"
pytestmark = pytest.mark.skipif(not (FOLDER / "card.json").is_file(), reason="particles-stem not trained yet")


def test_card_validates_and_sha_matches():
    card, folder = load_card("particles-stem", verify_sha256=True)
    assert folder == FOLDER
    assert card.name == "particles-stem" and card.task == "particles"
    assert card.class_names == ["background", "particle", "boundary"]
    lo, hi = card.trained_nm_per_px_range
    assert lo < hi and lo <= card.working_nm_per_px <= hi
    ref = card.embedding_reference
    assert ref is not None and len(ref.mean) == len(ref.std) == card.outputs.embedding_dim
    assert 100 <= len(ref.samples) and all(len(s) == card.outputs.embedding_dim for s in ref.samples)
    for key in ("pixel_miou", "object_f1_iou50", "d50_rel_error"):
        assert key in card.metrics
    assert card.training_command.startswith("python -m copilot.train particles-stem")


def test_onnx_graph_matches_card():
    ort = pytest.importorskip("onnxruntime")
    card, folder = load_card("particles-stem")
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == card.outputs.input
    names = [o.name for o in sess.get_outputs()]
    assert names == [card.outputs.probabilities, card.outputs.embedding]
    m = card.tiling.multiple_of
    x = np.zeros((1, 1, 8 * m, 12 * m), np.float32)
    probs, emb = sess.run(None, {card.outputs.input: x})
    assert probs.shape == (1, len(card.class_names), 8 * m, 12 * m)
    assert emb.shape == (1, card.outputs.embedding_dim)
