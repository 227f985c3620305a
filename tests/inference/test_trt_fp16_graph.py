"""TensorRT 11 builds FP16 from a float16 graph (weak typing is gone): the conversion is checked with ONNX Runtime."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from copilot.inference.card import load_card  # noqa: E402
from copilot.inference.trt_backend import fp16_onnx  # noqa: E402


def test_fp16_graph_keeps_float32_io_and_agrees(unet_model_dir, tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    card, folder = load_card(unet_model_dir)
    raw = fp16_onnx(card.model_path(folder))
    model = onnx.load_from_string(raw)
    onnx.checker.check_model(model)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert {o.name for o in model.graph.output} == {"probabilities", "embedding"}
    assert any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    x = np.random.default_rng(0).standard_normal((1, 1, 64, 64)).astype(np.float32)
    ref = ort.InferenceSession(str(card.model_path(folder)), providers=["CPUExecutionProvider"])
    try:
        half = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an ORT build without float16 CPU kernels
        pytest.skip(f"onnxruntime cannot run the float16 graph on this CPU: {exc}")
    p16, e16 = half.run(None, {"image": x})
    p32, e32 = ref.run(None, {"image": x})
    assert p16.dtype == np.float32
    np.testing.assert_allclose(p16, p32, atol=2e-2)
    assert (p16.argmax(1) == p32.argmax(1)).mean() > 0.98


def test_spatial_means_stay_in_float32(unet_model_dir):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    card, folder = load_card(unet_model_dir)
    model = onnx.load_from_string(fp16_onnx(card.model_path(folder)))
    producers = {o: n for n in model.graph.node for o in n.output}
    means = [n for n in model.graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    assert means
    for node in means:
        cast = producers[node.input[0]]
        assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT
    # the embedding output comes straight from the float32 mean, not through a float16 tensor
    assert producers["embedding"].op_type in ("ReduceMean", "GlobalAveragePool", "Reshape", "Flatten")
    x = np.random.default_rng(1).standard_normal((1, 1, 256, 256)).astype(np.float32)
    try:
        half = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        pytest.skip(f"onnxruntime cannot run the float16 graph on this CPU: {exc}")
    ref = ort.InferenceSession(str(card.model_path(folder)), providers=["CPUExecutionProvider"])
    e16 = half.run(["embedding"], {"image": x})[0]
    e32 = ref.run(["embedding"], {"image": x})[0]
    np.testing.assert_allclose(e16, e32, rtol=2e-2, atol=2e-2)
