"""One registry of file formats: chosen by magic bytes first, by suffix second.

A format whose signature is found wins even under the wrong suffix (a TIFF saved as ``.png`` still reads). A known
suffix whose signature is missing is refused with a reason instead of being handed to a decoder that would fail
obscurely. MRC has no reliable signature before MRC2000, so its suffixes are trusted and its header checked.

>>> choose(Path("x.tif"), b"II*\\x00" + bytes(12)).name
'tiff'
>>> sorted(FORMATS)[:4]
['bcf', 'dm3', 'dm4', 'emd']
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from copilot.errors import UnreadableFrame
from copilot.readers.base import Decoded, path_text

#: bytes read from the start of a file for sniffing (MRC's "MAP " sits at 208).
HEAD_BYTES = 1024


@dataclass(frozen=True)
class Format:
    """A readable format: ``read(path) -> Decoded``; ``magic(head) -> bool`` or None when it has no signature.

    ``signature_required=False`` lets the suffix alone select the format when the signature is missing (MRC
    files older than MRC2000 carry no "MAP " stamp); the decoder then validates the header itself.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path], Decoded]
    magic: Callable[[bytes], bool] | None = None
    description: str = ""
    signature_required: bool = True


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a format; later registrations of the same name win."""
    FORMATS[fmt.name] = fmt
    return fmt


# --- signatures --------------------------------------------------------------------------------------------------


def is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def is_jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def is_dm3(head: bytes) -> bool:
    # version 3 (big-endian int32), root tag length, byte-order flag 0/1
    return len(head) >= 12 and head[:4] == b"\x00\x00\x00\x03" and struct.unpack(">i", head[8:12])[0] in (0, 1)


def is_dm4(head: bytes) -> bool:
    # version 4, 8-byte root tag length, byte-order flag 0/1
    return len(head) >= 16 and head[:4] == b"\x00\x00\x00\x04" and struct.unpack(">i", head[12:16])[0] in (0, 1)


def is_hdf5(head: bytes) -> bool:
    return head.startswith(b"\x89HDF\r\n\x1a\n")


def is_ser(head: bytes) -> bool:
    # FEI/TIA series: byte order 'II', series id 0x0197, version 0x0210 or 0x0220
    return head[:4] == b"II\x97\x01" and head[4:6] in (b"\x10\x02", b"\x20\x02")


def is_bcf(head: bytes) -> bool:
    return head.startswith(b"AAMVHFSS")


def is_mrc(head: bytes) -> bool:
    return len(head) >= 212 and head[208:212] == b"MAP "


# --- choice ------------------------------------------------------------------------------------------------------


def by_suffix(path: Path) -> Format | None:
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    return None


def sniff(head: bytes) -> Format | None:
    """The format whose signature ``head`` carries, or None."""
    for fmt in FORMATS.values():
        if fmt.magic is not None and fmt.magic(head):
            return fmt
    return None


def choose(path: Path, head: bytes) -> Format:
    """The format to decode ``path`` with; raises UnreadableFrame with the reason when there is none."""
    found = sniff(head)
    if found is not None:
        return found
    expected = by_suffix(path)
    shown = head[:8].hex(" ") if head else "(empty)"
    if expected is not None and (expected.magic is None or not expected.signature_required):
        return expected  # no signature to check (old MRC): the decoder validates the header
    if expected is not None:
        return _raise(path, f"suffix {path.suffix!r} says {expected.name.upper()} but the file does not start with a "
                            f"{expected.name.upper()} signature (first bytes: {shown}): corrupt or not that format")
    known = ", ".join(sorted({s for f in FORMATS.values() for s in f.suffixes}))
    return _raise(path, f"unknown format: suffix {path.suffix or '(none)'!r} is not one of {known} and the first "
                        f"bytes ({shown}) match no known signature")


def _raise(path: Path, reason: str) -> Format:
    raise UnreadableFrame(path_text(path), reason)


# --- built-in formats (decoders import their heavy libraries lazily or cheaply) -------------------------------------

from copilot.readers.png import read_png  # noqa: E402
from copilot.readers.rsciio_formats import read_bcf, read_dm, read_emd, read_mrc, read_ser  # noqa: E402
from copilot.readers.tiff import read_tiff  # noqa: E402

register(Format("tiff", (".tif", ".tiff"), read_tiff, is_tiff, "TIFF (FEI, Zeiss, ImageJ, plain)"))
register(Format("png", (".png",), read_png, is_png, "PNG (uncalibrated)"))
register(Format("jpeg", (".jpg", ".jpeg"), read_png, is_jpeg, "JPEG (uncalibrated)"))
register(Format("dm3", (".dm3",), read_dm, is_dm3, "Gatan DigitalMicrograph 3"))
register(Format("dm4", (".dm4",), read_dm, is_dm4, "Gatan DigitalMicrograph 4"))
register(Format("emd", (".emd",), read_emd, is_hdf5, "EMD (Thermo Velox / NCEM), HDF5"))
register(Format("ser", (".ser",), read_ser, is_ser, "FEI TIA series"))
register(Format("bcf", (".bcf",), read_bcf, is_bcf, "Bruker Esprit (image part)"))
register(Format("mrc", (".mrc", ".mrcs", ".rec", ".ali", ".st"), read_mrc, is_mrc, "MRC / CCP-EM",
                signature_required=False))
