"""A simulated microscope that drops calibrated TIFF frames into a folder at a steady rate (``copilot demo``).

It acquires an in-situ sintering run: one field of view, particles growing at ``growth_nm_per_min`` (simulated
time runs ``time_scale`` times faster than the wall clock so growth is visible in a short demo).

    python -m copilot.sim.microscope OUT_DIR --frames 20 --interval 1.0
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from copilot.sim.sintering import SinteringRun
from copilot.sim.stem import SimParams
from copilot.sim.tiff import write_tiff


def run_microscope(out_dir: str | Path, n_frames: int = 20, interval_s: float = 1.0, seed: int = 0,
                   size_px: int = 1024, nm_per_px: float = 0.2, growth_nm_per_min: float = 0.5,
                   time_scale: float = 30.0, params: SimParams | None = None, stop=None,
                   on_frame=None) -> list[Path]:
    """Write ``n_frames`` frames ``frame_00000.tif``… into ``out_dir``, one every ``interval_s`` wall-clock seconds.

    Each frame's simulated time is ``index * interval_s * time_scale`` (its ``acquired_at`` follows the wall clock).
    ``stop`` is an optional ``threading.Event`` to end early; ``on_frame(path, sim_frame)`` is called after each
    write. Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = params or SimParams(size_px=size_px, nm_per_px=nm_per_px, touching_fraction=0.1, area_fraction=0.12)
    p = replace(p, size_px=size_px, nm_per_px=nm_per_px) if params is None else p
    sim_interval = interval_s * time_scale
    run = SinteringRun(seed=seed, params=p, growth_nm_per_min=growth_nm_per_min, interval_s=sim_interval,
                       duration_s=max(n_frames - 1, 1) * sim_interval)
    paths: list[Path] = []
    t0 = time.monotonic()
    start = datetime.now(timezone.utc)
    for i in range(n_frames):
        if stop is not None and stop.is_set():
            break
        frame = run.frame_at(i * sim_interval)
        delay = t0 + i * interval_s - time.monotonic()
        if delay > 0:
            if stop is not None:
                if stop.wait(delay):
                    break
            else:
                time.sleep(delay)
        acquired = max(datetime.now(timezone.utc), start + timedelta(seconds=i * interval_s))
        path = write_tiff(out / f"frame_{i:05d}.tif", frame, acquired_at=acquired)
        paths.append(path)
        if on_frame is not None:
            on_frame(path, frame)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m copilot.sim.microscope", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="folder the frames are written into")
    ap.add_argument("--frames", type=int, default=20, help="frames to acquire")
    ap.add_argument("--interval", type=float, default=1.0, help="wall-clock seconds between frames")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated specimen")
    ap.add_argument("--size", type=int, default=1024, help="frame edge in pixels")
    ap.add_argument("--nm-per-px", type=float, default=0.2, help="calibration of the frames")
    ap.add_argument("--growth", type=float, default=0.5, help="radius growth rate, nm per simulated minute")
    ap.add_argument("--time-scale", type=float, default=30.0, help="simulated seconds per wall-clock second")
    a = ap.parse_args(argv)
    for path in run_microscope(a.out_dir, a.frames, a.interval, a.seed, a.size, a.nm_per_px, a.growth,
                               a.time_scale, on_frame=lambda pth, f: print(pth, flush=True)):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
