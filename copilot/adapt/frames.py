"""The unlabeled target frames: from a folder, or the files behind a stream's recent result documents, and the
normalized working-grid images the network sees (the daemon's own resample + normalize)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from copilot.errors import UserError
from copilot.frame import Frame


def frames_from_folder(folder: Path, limit: int = 50) -> list[Frame]:
    """Up to ``limit`` readable frames of ``folder`` (newest last by name); unreadable files are skipped."""
    from copilot.readers import read_frame
    from copilot.errors import UnreadableFrame

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--frames {folder}: not a folder")
    frames = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))[-limit * 2:]:
        try:
            frames.append(read_frame(path, stream="adapt"))
        except (UnreadableFrame, OSError, ValueError):
            continue
    if not frames:
        raise UserError(f"--frames {folder}: no readable image in it")
    return frames[-limit:]


def frames_from_stream(state_dir: Path, stream: str, limit: int = 50) -> list[Frame]:
    """The files behind the last ``limit`` result documents of ``stream`` in ``<state_dir>/results.sqlite``, read
    again from where they were acquired (files that have gone are skipped)."""
    from copilot.readers import read_frame
    from copilot.errors import UnreadableFrame
    from copilot.store import ResultStore

    db = Path(state_dir) / "results.sqlite"
    if not db.is_file():
        raise UserError(f"--stream {stream}: no results store at {db} (pass --state-dir, or --frames DIR)")
    with ResultStore(db) as store:
        docs = store.recent(stream, limit)
    frames = []
    for doc in docs:
        origin = doc.get("origin") or ""
        try:
            frames.append(read_frame(Path(origin), stream=stream))
        except (UnreadableFrame, OSError, ValueError):
            continue
    if not frames:
        raise UserError(f"--stream {stream}: none of its {len(docs)} recent frames can be read again "
                        f"(socket frames are not kept; pass --frames DIR)")
    return frames


def working_images(backend, frames: list[Frame]) -> list[np.ndarray]:
    """Each frame as the network sees it (float32, normalized, at the card's working scale, bounded by the
    backend's input limits)."""
    return [backend.prepare(f)[0].astype(np.float32) for f in frames]


def random_crops(images: list[np.ndarray], n: int, size_px: int, rng: np.random.Generator,
                 multiple: int = 8) -> np.ndarray:
    """(n, 1, s, s) crops drawn from the images (s = ``size_px``, or smaller for small images, a multiple of
    ``multiple``); images smaller than s are padded by reflection."""
    s = max(multiple, min(size_px, max(min(im.shape) for im in images)) // multiple * multiple)
    out = np.empty((n, 1, s, s), np.float32)
    for i in range(n):
        im = images[int(rng.integers(len(images)))]
        if min(im.shape) < s:
            im = np.pad(im, [(0, max(0, s - im.shape[0])), (0, max(0, s - im.shape[1]))], mode="reflect")
        y = int(rng.integers(im.shape[0] - s + 1))
        x = int(rng.integers(im.shape[1] - s + 1))
        out[i, 0] = im[y:y + s, x:x + s]
    return out


def particle_morphology(backend, frames: list[Frame]) -> dict[str, float] | None:
    """What the parent measures of the particles in ``frames`` (calibrated ones), as simulator parameters: median
    ECD ``d50_nm``, log-normal spread ``sigma_log`` and covered ``area_fraction``; None without at least 10 sized
    particles. The appearance method renders its training pairs with these (seed 003 learns the morphology as well
    as the contrast). On a defocused BF-TEM stream of 5 nm particles (parent F1 0.80), pairs rendered with the
    stream's true imaging gave 0.85, with its true imaging and morphology 0.91; fitted imaging alone 0.78, fitted
    imaging and this estimate (the parent measures those particles 24 % too large) 0.84."""
    from copilot.analysis import measure

    ecds, covered = [], []
    for f in frames:
        if f.nm_per_px is None:
            continue
        fm = measure(backend.segment(f))
        ps = fm.summary.particles
        if ps is None:
            continue
        t = ps.table
        ecds.extend(t.ecd[t.sized].tolist())
        covered.append(float(np.count_nonzero(fm.instances) / fm.instances.size))
    if len(ecds) < 10:
        return None
    logs = np.log(np.asarray(ecds))
    return {"d50_nm": float(np.clip(np.exp(np.median(logs)), 2.5, 25.0)),
            "sigma_log": float(np.clip(1.4826 * np.median(np.abs(logs - np.median(logs))), 0.1, 0.5)),
            "area_fraction": float(np.clip(np.mean(covered), 0.02, 0.35))}
