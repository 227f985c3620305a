"""Quarantine copies: sparse-aware, regular files inside the watched tree only, bounded; and the tree walk's link
rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

from copilot.sources.files import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, iter_files
from copilot.sources.quarantine import quarantine_copy, sparse_copy


def test_sparse_file_is_copied_as_holes(tmp_path):
    src = tmp_path / "sparse.tif"
    with open(src, "wb") as fh:
        fh.write(b"II*\x00" + b"\x01" * 4092)
        fh.seek(2**30)
        fh.write(b"\x02" * 4096)
        fh.truncate(2**31)
    dst = tmp_path / "copy.tif"
    written = sparse_copy(src, dst, max_bytes=2**20)
    assert written == 8192
    assert dst.stat().st_size == 2**31 and dst.stat().st_blocks * 512 < 2**20
    with open(dst, "rb") as fh:
        assert fh.read(4) == b"II*\x00"
        fh.seek(2**30)
        assert fh.read(4096) == b"\x02" * 4096
        fh.seek(2**30 + 8192)
        assert fh.read(16) == bytes(16)


def test_only_regular_files_inside_the_tree_are_copied(tmp_path):
    root, outside, q = tmp_path / "acq", tmp_path / "outside", tmp_path / "quarantine"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.tif").write_bytes(b"secret")
    os.symlink(outside / "secret.tif", root / "link.tif")
    os.mkfifo(root / "pipe.tif")
    (root / "big.tif").write_bytes(os.urandom(3 * 2**20))
    name = "é" * 120 + ".tif"  # 244 bytes
    (root / name).write_bytes(b"junk")

    def copy(path: Path) -> str:
        return quarantine_copy(path, str(path), "1:2", "test", folder=q, root=root, max_bytes=2**20)

    assert copy(root / "link.tif").startswith("not copied: not a regular file")
    assert copy(root / "pipe.tif").startswith("not copied: not a regular file")
    assert copy(outside / "secret.tif") == "not copied: outside the watched folder"
    assert "more than limits.quarantine_copy_max_mb" in copy(root / "big.tif")
    assert copy(root / name).startswith("copied to ")
    copies = [p for p in q.iterdir() if p.suffix == ".tif"]
    assert [p.read_bytes() for p in copies] == [b"junk"]
    records = [json.loads(p.read_text()) for p in q.glob("*.json")]
    assert sorted(r["origin"] for r in records) == sorted([str(root / name), str(root / "big.tif")])
    assert (root / "big.tif").exists() and (outside / "secret.tif").read_bytes() == b"secret"


def test_tree_walk_never_leaves_the_tree_nor_loops(tmp_path):
    root, outside = tmp_path / "acq", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    for p in (root / "f.tif", root / "a" / "g.tif", root / "a" / "b" / "h.tif", outside / "o.tif"):
        p.write_bytes(b"x")
    os.symlink("..", root / "a" / "b" / "up")  # loop
    os.symlink(root, root / "a" / "self")  # loop
    os.symlink(outside, root / "out")  # linked folder out of the tree
    os.symlink(outside / "o.tif", root / "o-link.tif")  # linked file out of the tree
    os.symlink("f.tif", root / "f-link.tif")  # linked file inside the tree: kept
    os.symlink("loop.tif", root / "loop.tif")  # self loop
    os.mkfifo(root / "pipe.tif")
    found = [str(p.relative_to(root)) for p in iter_files(root, DEFAULT_INCLUDE, DEFAULT_EXCLUDE, recursive=True)]
    assert found == ["f-link.tif", "f.tif", "a/g.tif", "a/b/h.tif"]
