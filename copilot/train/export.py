"""ONNX export (opset 17, dynamic H/W) and an ONNX Runtime CPU latency probe."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def export_onnx(net, path: str | Path, opset: int = 17) -> Path:
    """Export a TinyUNet as input ``image`` (N,1,H,W) → ``probabilities`` (N,C,H,W), ``embedding`` (N,D)."""
    import torch

    from copilot.train.unet import ExportWrapper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(net).eval()
    m = net.multiple_of
    dummy = torch.zeros(1, 1, 8 * m, 8 * m)
    tmp = path.with_name(f".{path.name}.partial")
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), str(tmp), input_names=["image"], output_names=["probabilities", "embedding"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "probabilities": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
            opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    tmp.replace(path)
    return path


def ort_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_latency(path: str | Path, size_px: int = 1024, threads: int = 2, repeats: int = 5) -> float:
    """Median seconds for one (1,1,size,size) forward pass on ONNX Runtime CPU."""
    sess = ort_session(path, threads)
    x = np.random.default_rng(0).standard_normal((1, 1, size_px, size_px)).astype(np.float32)
    sess.run(None, {"image": x})
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {"image": x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))
