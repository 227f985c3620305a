"""The script a user would write without the co-pilot: watchdog + torch eager + skimage regionprops, sequential.

It is the benchmark's baseline: the same network and weights (torch eager, fp32, default threads), percentile
normalization, no pipelining, no backend choice, no reuse of work: each file event runs read → torch forward →
argmax → label → regionprops → publish, one frame after the other, in watchdog's event thread. By default it runs the
network on the frame as acquired, as a user who takes a segmentation model and applies it to their images does;
``--working-scale`` makes it follow the model card and first rescale the frame to the card's nm/px (skimage
``rescale``), which is the fairer, harder baseline. Results go out as one JSON message per frame on a ZeroMQ PUB
socket, so the benchmark measures it exactly like the daemon (from the rename to a subscriber receiving it).

    python bench/naive.py WATCH_DIR --model particles-stem --pub tcp://127.0.0.1:5599
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np


def load_network(model: str):
    """The card's network in torch eager mode, fp32, weights from safetensors (converted from model.onnx)."""
    import tempfile

    from copilot.inference.card import load_card
    from copilot.inference.torch_backend import build_fused_unet, load_safetensors_state
    from copilot.inference.weights import convert

    card, folder = load_card(model)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        weights = convert(card.model_path(folder), Path(tempfile.mkdtemp()) / "model.safetensors")
    state, meta = load_safetensors_state(weights)
    net = build_fused_unet(tuple(int(c) for c in meta["channels"].split(",")), int(meta["n_classes"]))
    net.load_state_dict(state)
    return card, net.eval()


def analyse(path: Path, card, net, working_scale: bool = False) -> dict:
    import tifffile
    import torch
    from skimage.measure import label, regionprops
    from skimage.transform import rescale

    t0 = time.perf_counter()
    with tifffile.TiffFile(path) as tif:
        img = tif.pages[0].asarray().astype(np.float32)
        xres = tif.pages[0].tags.get("XResolution")
        nm_per_px = (xres.value[1] / xres.value[0]) if xres else card.working_nm_per_px
    nm = nm_per_px
    if working_scale:
        scale = nm_per_px / card.working_nm_per_px
        img = rescale(img, scale, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
        nm = card.working_nm_per_px
    lo, hi = np.percentile(img, [card.normalization.low_percentile, card.normalization.high_percentile])
    img = (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) - card.normalization.mean) / card.normalization.std
    h, w = img.shape
    m = card.tiling.multiple_of
    img = np.pad(img, ((0, -h % m), (0, -w % m)), mode="reflect")
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])
    classes = logits.argmax(1)[0, :h, :w].numpy()
    t1 = time.perf_counter()
    particles = label(classes >= 1)  # particle + its boundary ring
    props = [{"ecd_nm": float(p.equivalent_diameter_area * nm), "area_nm2": float(p.area * nm * nm),
              "eccentricity": float(p.eccentricity), "solidity": float(p.solidity)} for p in regionprops(particles)]
    ecd = [p["ecd_nm"] for p in props]
    t2 = time.perf_counter()
    return {"frame_id": path.stem, "count": len(props), "d50_nm": float(np.median(ecd)) if ecd else None,
            "particles": props, "timings_ms": {"segment": (t1 - t0) * 1e3, "measure": (t2 - t1) * 1e3}}


def main(argv: list[str] | None = None) -> int:
    import zmq
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("watch", type=Path)
    ap.add_argument("--model", default="particles-stem")
    ap.add_argument("--pub", default="tcp://127.0.0.1:5599")
    ap.add_argument("--working-scale", action="store_true", help="rescale frames to the card's nm/px first")
    a = ap.parse_args(argv)

    card, net = load_network(a.model)
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.bind(a.pub)
    lock = threading.Lock()

    class Handler(FileSystemEventHandler):
        def handle(self, path: str) -> None:
            p = Path(path)
            if p.suffix.lower() not in (".tif", ".tiff") or p.name.startswith("."):
                return
            with lock:
                result = analyse(p, card, net, a.working_scale)
                pub.send_multipart([b"naive", json.dumps(result).encode()])

        def on_moved(self, event):
            self.handle(event.dest_path)

        def on_closed(self, event):
            self.handle(event.src_path)

    observer = Observer()
    observer.schedule(Handler(), str(a.watch))
    observer.start()
    print("ready", flush=True)
    try:
        while observer.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    observer.stop()
    observer.join()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
