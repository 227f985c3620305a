"""ONNX initializers → safetensors weights for the torch backend (no pickle anywhere).

The training recipe exports ``model.onnx`` only (its torch ``state_dict`` goes to ``runs/`` as a pickle, which the
daemon never loads). ONNX export in eval mode folds every BatchNorm into the preceding convolution, so the ONNX file
holds exactly the weights of a *fused* TinyUNet: each convolution with a bias, no BatchNorm. This module reads them
back, names them after the fused network's modules and writes a safetensors file whose metadata records the
architecture and the sha256 of the ONNX file it came from:

    python -m copilot.inference.weights engines/particles-stem/model.onnx engines/particles-stem/model.safetensors

Names come from the exporter's node names (``/net/downs.1/downs.1.3/Conv_output_0`` → ``downs.1.3``); a graph
without them is mapped by execution order, which is the same in the ONNX graph and the network. A BatchNormalization
node left unfolded after a convolution is folded here. Reading and writing need ``onnx`` and ``safetensors`` (numpy
API), not torch.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from copilot.inference.card import sha256_of

FORMAT = "copilot.tinyunet-fused/1"
_NAME = re.compile(r"^/net/(?:.*/)?([^/]+)/Conv_output_0$")


def fused_conv_names(channels: tuple[int, ...]) -> list[str]:
    """Convolution module names of a fused TinyUNet in execution order.

    >>> fused_conv_names((8, 16))
    ['downs.0.0', 'downs.1.0', 'downs.1.3', 'lateral.0', 'ups.0.0', 'head']
    """
    names = []
    for i in range(len(channels)):
        names += [f"downs.{i}.0"] + ([f"downs.{i}.3"] if i > 0 else [])
    for k, i in enumerate(range(len(channels) - 1, 0, -1)):
        names += [f"lateral.{k}", f"ups.{k}.0"] + ([f"ups.{k}.3"] if i > 1 else [])
    return names + ["head"]


def _fold_bn(w: np.ndarray, b: np.ndarray, scale, bias, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    k = scale / np.sqrt(var + eps)
    return (w * k[:, None, None, None]).astype(np.float32), ((b - mean) * k + bias).astype(np.float32)


def onnx_to_tensors(onnx_path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Fused-TinyUNet weights (``<module>.weight`` / ``<module>.bias``) and metadata (channels, classes)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:  # constants the exporter did not turn into initializers
        if node.op_type == "Constant" and node.output[0] not in inits:
            for a in node.attribute:
                if a.name == "value":
                    inits[node.output[0]] = numpy_helper.to_array(a.t)
    changed = True
    while changed:  # the exporter shares identical initializers through Identity nodes
        changed = False
        for node in g.node:
            if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in inits:
                inits[node.output[0]] = inits[node.input[0]]
                changed = True
    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    convs = []
    for node in g.node:
        if node.op_type != "Conv":
            continue
        w = inits[node.input[1]].astype(np.float32)
        b = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros(
            w.shape[0], np.float32)
        out = node.output[0]
        nxt = consumers.get(out, [])
        if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization":
            bn = nxt[0]
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            w, b = _fold_bn(w, b, *(inits[n].astype(np.float32) for n in bn.input[1:5]), eps)
        m = _NAME.match(out)
        convs.append((m.group(1) if m else None, w, b))

    if not convs:
        raise ValueError(f"{onnx_path}: no convolution in the graph; the torch backend runs TinyUNet models only")
    downs0 = [c for c in convs if c[0] is not None and re.fullmatch(r"downs\.\d+\.0", c[0])]
    if len(downs0) >= 2 and all(c[0] is not None for c in convs):
        channels = tuple(int(c[1].shape[0]) for c in downs0)
    else:  # no usable names: the first conv of each down level is the one whose input width changes
        channels = _channels_by_order([c[1] for c in convs])
        expected = fused_conv_names(channels)
        if len(expected) != len(convs):
            raise ValueError(f"{onnx_path}: {len(convs)} convolutions do not look like a TinyUNet ({expected})")
        convs = [(name, w, b) for name, (_, w, b) in zip(expected, convs)]
    expected = fused_conv_names(channels)
    got = [c[0] for c in convs]
    if sorted(got) != sorted(expected):
        raise ValueError(f"{onnx_path}: convolutions {got} do not match a TinyUNet with channels {channels}")
    tensors: dict[str, np.ndarray] = {}
    for name, w, b in convs:
        tensors[f"{name}.weight"] = np.ascontiguousarray(w)
        tensors[f"{name}.bias"] = np.ascontiguousarray(b)
    r = space_to_depth(g)  # a space-to-depth network's first and last convolutions work on r² channels each
    meta = {
        "format": FORMAT,
        "channels": ",".join(str(c) for c in channels),
        "n_classes": str(tensors["head.weight"].shape[0] // (r * r)),
        "in_channels": str(tensors["downs.0.0.weight"].shape[1] // (r * r)),
        "space_to_depth": str(r),
        "onnx_sha256": sha256_of(Path(onnx_path)),
    }
    return tensors, meta


def space_to_depth(graph) -> int:
    """The block size of the head's DepthToSpace (``TinyUNet(space_to_depth=r)``), 1 for a full-grid network."""
    from onnx import helper

    for node in graph.node:
        if node.op_type == "DepthToSpace":
            return int(next(helper.get_attribute_value(a) for a in node.attribute if a.name == "blocksize"))
    return 1


def _channels_by_order(weights: list[np.ndarray]) -> tuple[int, ...]:
    # downs: level 0 has 1 conv, the others 2; a level ends where the next conv's out-width grows
    chans = [int(weights[0].shape[0])]
    i = 1
    while i < len(weights) and weights[i].shape[0] > chans[-1] and weights[i].shape[2] == 3:
        chans.append(int(weights[i].shape[0]))
        i += 2
    return tuple(chans)


def convert(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write the fused weights of ``onnx_path`` as safetensors (atomically); returns the path."""
    from safetensors.numpy import save

    from copilot.inference.trt_plan import atomic_write

    tensors, meta = onnx_to_tensors(onnx_path)
    return atomic_write(Path(out_path), save(tensors, metadata=meta))  # unique temp name: two converters never clash


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (JSON only: no tensor is read, nothing is unpickled)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        return dict(fh.metadata() or {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.inference.weights", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="model.onnx to read the weights from")
    ap.add_argument("out", type=Path, help="the .safetensors file to write")
    a = ap.parse_args(argv)
    out = convert(a.onnx, a.out)
    print(f"{out}: {read_metadata(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
