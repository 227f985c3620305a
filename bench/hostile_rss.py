"""Peak resident memory and wall time of the daemon's frame path on single hostile inputs (one process per input).

    PYTHONPATH=$PWD python bench/hostile_rss.py [--cap-gb 4] [--json bench/results/hostile-rss.json]

Each case writes one file, then a fresh child process builds the daemon's pipeline (the shipped particles-stem model
on ONNX Runtime CPU, a results store), submits that one file and reports ``ru_maxrss`` (peak RSS, MB), the wall time
(s) and the outcome (processed, or the recorded reason). The child runs under an address-space cap (``--cap-gb``) so
a case that would take the machine down ends in a MemoryError instead; ``rss_mb`` is then "at least".
Never a test: numbers are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = ("good-512", "good-2048", "large-7000", "rgb-7000", "float64-7000", "large-8192", "upsample-512-at-10nm",
         "bomb-tiff-20000", "sparse-tiff-32768", "bomb-png-20000")


def make_case(name: str, folder: Path) -> Path:
    import tifffile
    from PIL import Image


    path = folder / f"{name}.{'png' if 'png' in name else 'tif'}"
    rng = np.random.default_rng(0)
    if name.startswith(("good", "large")):
        n = int(name.rsplit("-", 1)[1])
        img = (rng.normal(1000, 30, (n, n))).astype(np.uint16)
        tifffile.imwrite(path, img, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "nm"})
    elif name.startswith("rgb"):  # uncalibrated colour
        n = int(name.rsplit("-", 1)[1])
        img = rng.integers(0, 255, (n, n, 3), dtype=np.uint8)
        tifffile.imwrite(path, img, photometric="rgb")
    elif name.startswith("float64"):  # with NaN pixels to mask
        n = int(name.rsplit("-", 1)[1])
        img = rng.normal(1000, 30, (n, n))
        img[::97, ::89] = np.nan
        tifffile.imwrite(path, img)
    elif name == "upsample-512-at-10nm":
        img = (rng.normal(1000, 30, (512, 512))).astype(np.uint16)
        tifffile.imwrite(path, img, imagej=True, resolution=(1 / 10, 1 / 10), metadata={"unit": "nm"})
    elif name == "bomb-tiff-20000":
        tifffile.imwrite(path, np.zeros((20000, 20000), np.uint8), compression="zlib", tile=(1024, 1024))
    elif name == "sparse-tiff-32768":
        mm = tifffile.memmap(path, shape=(32768, 32768), dtype=np.uint16)  # header + a hole of 2 GiB
        del mm
    elif name == "bomb-png-20000":
        Image.fromarray(np.zeros((20000, 20000), np.uint8)).save(path, optimize=True)
    else:
        raise ValueError(name)
    return path


def child(path: Path) -> dict:
    from copilot.config import load_settings
    from copilot.daemon import Daemon  # noqa: F401  (same imports as the daemon)
    from copilot.inference.ort_backend import OrtBackend
    from copilot.pipeline import Pipeline
    from copilot.sources.base import Arrival
    from copilot.store import ResultStore

    settings = load_settings()
    state = Path(tempfile.mkdtemp())
    store = ResultStore(state / "results.sqlite")
    backend = OrtBackend.from_name("particles-stem", threads=2)
    results: list = []
    pipe = Pipeline(backend, store=store, sinks=[results.append], quarantine_dir=state / "quarantine",
                    **_limits(settings))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    pipe.start()
    pipe.submit(Arrival(origin=str(path), path=path))
    pipe.stop()
    wall = time.perf_counter() - t0
    status = store.status(str(path))
    return {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "baseline_mb": round(base),
            "wall_s": round(wall, 2), "outcome": status[0] if status else "none",
            "reason": (status[1] or "")[:200] if status else ""}


def _limits(settings) -> dict:
    """Pipeline keyword arguments for the input limits, when this version of the pipeline has them."""
    import inspect

    from copilot.pipeline import Pipeline

    if "limits" in inspect.signature(Pipeline).parameters and hasattr(settings, "limits"):
        return {"limits": settings.limits}
    return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap-gb", type=float, default=4.0)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            path = make_case(name, Path(tmp))
            file_mb = round(os.stat(path).st_blocks * 512 / 2**20, 2)  # disk actually used (sparse files: little)
            cap = int(args.cap_gb * 2**30)

            def limit(cap=cap):
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

            proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                                  preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "2"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"outcome": f"child died (rc {proc.returncode})",
                                                       "reason": proc.stderr.strip().splitlines()[-1][:200]
                                                       if proc.stderr.strip() else ""}
            row = {"case": name, "file_mb": file_mb, **row}
            rows.append(row)
            print(json.dumps(row), flush=True)
            path.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps({"cap_gb": args.cap_gb, "load_avg": os.getloadavg(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
