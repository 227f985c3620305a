"""Real vendor files for tests and demos, taken from packages on PyPI (never committed to this repository).

``fetch_vendor_file("aquami", "1.1.0", "aquami/micrographs/Sample.tif")`` runs
``python -m pip download --no-deps --no-binary :none: aquami==1.1.0`` once, keeps the archive (wheel or sdist) under
``<repo>/.cache/vendor/_downloads/``, extracts only the requested member and returns its path; later calls return
the cached file without touching the network.

``member`` is a path inside the archive; if the layout differs (an sdist's ``pkg-1.0/`` prefix) it is found by
suffix. A member inside a zip inside the archive is addressed through the zip: ``.../tiff_Zeiss_SEM.zip/x.tif``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
_NETWORK_MARKERS = (
    "NewConnectionError", "Failed to establish", "Network is unreachable", "Temporary failure in name resolution",
    "Name or service not known", "ConnectionError", "ConnectTimeout", "ReadTimeout", "Connection refused",
    "Connection reset", "ProxyError", "SSLError", "timed out", "HTTP error 5", "Max retries exceeded",
    "(from versions: none)",  # the index answered nothing at all: unreachable (the packages we fetch do exist)
)


class VendorFetchError(RuntimeError):
    """pip could not download the package; ``network`` is True when the cause looks like no/unstable network."""

    def __init__(self, message: str, network: bool):
        super().__init__(message)
        self.network = network


def default_cache_dir() -> Path:
    """``$COPILOT_VENDOR_CACHE``, else ``<repo>/.cache/vendor`` (repo = the checkout holding pyproject.toml)."""
    override = os.environ.get("COPILOT_VENDOR_CACHE")
    if override:
        return Path(override)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache" / "vendor"
    return Path.home() / ".cache" / "copilot" / "vendor"


def fetch_vendor_file(package: str, version: str, member: str, cache_dir: Path | None = None) -> Path:
    """Path of ``member`` from ``package==version`` on PyPI, downloaded and extracted on first use, cached after."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts = _safe_parts(member)
    target = cache / f"{package}-{version}" / Path(*[p + ".d" if _is_archive_name(p) else p for p in parts[:-1]],
                                                     parts[-1])
    if target.is_file() and target.stat().st_size > 0:
        return target
    archive = download_archive(package, version, cache)
    data = _read_member(archive, parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    return target


def list_vendor_members(package: str, version: str, cache_dir: Path | None = None) -> list[str]:
    """Names of all files in the package's archive (to pick real sample files)."""
    archive = download_archive(package, version, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    with _open_archive(archive.name, archive.read_bytes()) as arc:
        return sorted(arc.names())


def download_archive(package: str, version: str, cache: Path) -> Path:
    """The wheel or sdist of ``package==version`` in ``cache/_downloads/<package>-<version>/`` (pip on first use)."""
    folder = cache / "_downloads" / f"{package}-{version}"
    found = _archives(folder)
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", f"{package}=={version}",
           "-d", str(folder), "--disable-pip-version-check", "--no-input", "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise VendorFetchError(f"pip download {package}=={version} timed out", network=True) from exc
    found = _archives(folder)
    if proc.returncode != 0 or not found:
        detail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        network = any(m.lower() in detail.lower() for m in _NETWORK_MARKERS)
        raise VendorFetchError(f"pip download {package}=={version} failed (exit {proc.returncode}): {detail}", network)
    return found[0]


# --- archives ----------------------------------------------------------------------------------------------------


def _archives(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_archive_name(p.name))


def _is_archive_name(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def _safe_parts(member: str) -> list[str]:
    parts = [p for p in PurePosixPath(member.replace("\\", "/")).parts if p not in ("", "/", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"member must be a relative path inside the archive, got {member!r}")
    return parts


class _Archive:
    """Zip or tar, read-only, by member name."""

    def __init__(self, name: str, data: bytes):
        if zipfile.is_zipfile(io.BytesIO(data)):
            self._zip, self._tar = zipfile.ZipFile(io.BytesIO(data)), None
        else:
            self._zip, self._tar = None, tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        self.name = name

    def names(self) -> list[str]:
        if self._zip is not None:
            return [n for n in self._zip.namelist() if not n.endswith("/")]
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return self._tar.extractfile(name).read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        (self._zip or self._tar).close()


def _open_archive(name: str, data: bytes) -> _Archive:
    return _Archive(name, data)


def _read_member(archive: Path, parts: list[str]) -> bytes:
    data, name = archive.read_bytes(), archive.name
    remaining = parts
    while True:
        with _open_archive(name, data) as arc:
            names = arc.names()
            # longest prefix of the remaining path that names a file here (directly or by suffix)
            for cut in range(len(remaining), 0, -1):
                found = _match("/".join(remaining[:cut]), names)
                if found is not None and (cut == len(remaining) or _is_archive_name(found)):
                    data, name, remaining = arc.read(found), found, remaining[cut:]
                    break
            else:
                wanted = "/".join(remaining)
                base = remaining[-1]
                near = [n for n in names if n.rsplit("/", 1)[-1] == base][:5]
                raise FileNotFoundError(f"{wanted!r} is not in {name}" + (f"; same name at: {near}" if near else ""))
        if not remaining:
            return data


def _match(wanted: str, names: list[str]) -> str | None:
    if wanted in names:
        return wanted
    hits = sorted((n for n in names if n.endswith("/" + wanted)), key=len)
    return hits[0] if hits else None
