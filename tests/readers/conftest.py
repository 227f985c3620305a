"""Helpers for reader tests: real vendor files fetched from PyPI (cached), and writers for synthetic files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from copilot.readers.vendor_samples import VendorFetchError, fetch_vendor_file

HYPERSPY = ("hyperspy", "1.7.6")
AQUAMI = ("aquami", "1.1.0")


def vendor(package: str, version: str, member: str) -> Path:
    """The cached vendor file; skips (with the reason) only when pip cannot reach PyPI."""
    try:
        return fetch_vendor_file(package, version, member)
    except VendorFetchError as exc:
        if exc.network:
            pytest.skip(f"PyPI not reachable, cannot fetch {package}=={version}: {str(exc)[:300]}")
        raise


def hyperspy_io(member: str) -> Path:
    """A file from the hyperspy 1.7.6 wheel's test data (``hyperspy/tests/io/<member>``)."""
    return vendor(*HYPERSPY, f"hyperspy/tests/io/{member}")


def write_mrc(path: Path, data: np.ndarray, cell_angstrom: tuple[float, float, float] | None,
              grid: tuple[int, int, int] | None = None) -> Path:
    """A minimal little-endian MRC2014 file of a 2-D int16/float32 image (``cell_angstrom=None`` → zero cell)."""
    ny, nx = data.shape
    mode = {np.dtype(np.int16): 1, np.dtype(np.float32): 2, np.dtype(np.uint16): 6}[data.dtype]
    mx, my, mz = grid or (nx, ny, 1)
    header = bytearray(1024)
    struct.pack_into("<10i", header, 0, nx, ny, 1, mode, 0, 0, 0, mx, my, mz)
    struct.pack_into("<6f", header, 40, *(cell_angstrom or (0.0, 0.0, 0.0)), 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    struct.pack_into("<3f", header, 76, float(data.min()), float(data.max()), float(data.mean()))
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    path.write_bytes(bytes(header) + data.astype(data.dtype.newbyteorder("<")).tobytes())
    return path


def sem_like(shape=(480, 640), seed=0, dtype=np.uint8) -> np.ndarray:
    """A noisy, textured grey image (what a detector records): smooth blobs plus shot-like noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random(shape), 6)
    base = (base - base.min()) / (np.ptp(base) + 1e-12)
    img = 0.25 + 0.5 * base + rng.normal(0, 0.05, shape)
    img = np.clip(img, 0, 1)
    if dtype == np.float32:
        return img.astype(np.float32)
    return np.rint(img * np.iinfo(dtype).max).astype(dtype)


def burn_bar(img: np.ndarray, rows: int, style: str = "zeiss", seed: int = 1) -> np.ndarray:
    """Draw a vendor-style data bar over the bottom ``rows`` rows: flat background, a rule, blocky 'text'."""
    out = img.copy()
    hi = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else 1.0
    bg, ink = (hi, 0) if style == "zeiss" else (0, hi)
    h, w = img.shape
    top = h - rows
    out[top:] = bg
    out[top] = ink if style == "zeiss" else hi * 0.98  # separator line
    rng = np.random.default_rng(seed)
    for _ in range(12):  # 'words': small blocks of glyph-like strokes
        y = int(rng.integers(top + 3, h - 8))
        x = int(rng.integers(0, w - 60))
        glyphs = rng.random((6, 50)) > 0.5
        out[y : y + 6, x : x + 50][glyphs] = ink
    return out


@pytest.fixture
def vendor_file():
    """``vendor_file(package, version, member) -> Path`` (skips only when PyPI is unreachable)."""
    return vendor


@pytest.fixture
def hyperspy_file():
    """``hyperspy_file("dm3_2D_data/multi_signal.dm3") -> Path`` from the hyperspy 1.7.6 wheel's test data."""
    return hyperspy_io


@pytest.fixture
def synth():
    """Writers of synthetic inputs: ``sem_like``, ``burn_bar``, ``write_mrc``."""
    from types import SimpleNamespace

    return SimpleNamespace(sem_like=sem_like, burn_bar=burn_bar, write_mrc=write_mrc)
