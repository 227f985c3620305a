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


PRIOR_NOTE = ("Outputs are calibrated for the training's class weights w: weighted cross-entropy makes a network's "
              "softmax proportional to w_c·p_c, so −log w_c was added to the head's bias "
              "(copilot.train.export.correct_class_prior) and the foreground's 0.5 iso-line sits on the true edge.")


def correct_class_prior(path: str | Path, class_weights, bias: str = "net.head.bias") -> Path:
    """Subtract log(class weight) from the output head's bias of an exported model, in place.

    Trained with weighted cross-entropy, a network's softmax estimates p_c·w_c / Σ p_k·w_k; with soft (area-coverage)
    targets that pushes the iso-lines of the up-weighted classes outward (particles came out ~2-4 % too large). After
    the shift the outputs are the posteriors p_c, whatever backend runs the model.
    """
    import onnx
    from onnx import numpy_helper

    from copilot.inference.weights import space_to_depth

    path = Path(path)
    model = onnx.load(str(path))
    init = {t.name: t for t in model.graph.initializer}
    if bias not in init:
        raise ValueError(f"{path}: no initializer {bias!r} (the output head's bias) to correct")
    b = numpy_helper.to_array(init[bias]).astype(np.float32)
    # a space-to-depth head (TinyUNet(space_to_depth=r)) holds class c's outputs at c·r² … (c + 1)·r² − 1
    w = np.repeat(np.asarray(class_weights, np.float32), space_to_depth(model.graph) ** 2)
    if w.shape != b.shape or not np.all(w > 0):
        raise ValueError(f"{path}: class weights {tuple(w)} do not match the head's {b.size} classes")
    init[bias].CopyFrom(numpy_helper.from_array(b - np.log(w), bias))
    tmp = path.with_name(f".{path.name}.partial")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def calibrate_engine(folder: str | Path, class_weights) -> Path:
    """:func:`correct_class_prior` on an engine folder's model.onnx, keeping its card true (checksum, note)."""
    from copilot.inference.card import load_card, save_card, sha256_of

    folder = Path(folder)
    card, _ = load_card(folder)
    if PRIOR_NOTE in card.description:
        raise ValueError(f"{folder}: already calibrated for its class weights")
    correct_class_prior(folder / "model.onnx", class_weights)
    save_card(card.model_copy(update={"description": f"{card.description} {PRIOR_NOTE}",
                                      "model_sha256": sha256_of(folder / "model.onnx")}), folder)
    load_card(folder)  # the checksum matches the corrected model
    return folder


def main(argv: list[str] | None = None) -> int:
    """python -m copilot.train.export ENGINE_DIR --class-weights 1,1,2.5 (then: python -m copilot.train.heldout
    ENGINE_DIR --update-card)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m copilot.train.export", description=main.__doc__)
    ap.add_argument("engine_dir", type=Path)
    ap.add_argument("--class-weights", required=True, help="the weights the model was trained with, comma-separated")
    a = ap.parse_args(argv)
    try:
        calibrate_engine(a.engine_dir, [float(v) for v in a.class_weights.split(",")])
    except ValueError as exc:
        ap.exit(2, f"error: {exc}\n")
    print(f"calibrated {a.engine_dir / 'model.onnx'} for class weights {a.class_weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
