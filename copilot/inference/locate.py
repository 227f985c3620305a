"""Where models are found: a search path of folders that hold ``<name>/card.json`` + ``<name>/model.onnx``.

Searched in this order (the first folder holding a name wins, like ``PATH``):

1. ``COPILOT_ENGINES`` — folders separated by ``os.pathsep``;
2. the user's data folder — ``$XDG_DATA_HOME/copilot/engines`` (``~/.local/share/copilot/engines``;
   ``%LOCALAPPDATA%\\copilot\\engines`` on Windows): adapted and third-party models are installed here;
3. the models shipped with the package — ``copilot/_engines`` in an installed wheel, ``engines/`` in a source checkout;
4. the system's share folders — ``<sys.prefix>/share/copilot/engines``, ``/usr/local/share/…``, ``/usr/share/…``.

    >>> [m.name for m in find_models()]  # doctest: +SKIP
    ['particles-stem', 'phases-sem']
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from copilot.errors import ModelNotFound

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parents[1]
ENGINES_DIR = PACKAGE.parent / "engines"  # a source checkout's top-level engines/ (the committed models)
PACKAGED_DIR = PACKAGE / "_engines"  # the same models inside an installed wheel (package data)


@dataclass(frozen=True)
class ModelsFolder:
    where: str  # "COPILOT_ENGINES", "user", "package", "checkout" or "system"
    path: Path


@dataclass(frozen=True)
class FoundModel:
    name: str
    folder: Path
    where: str
    shadowed_by: Path | None = None  # an earlier folder on the search path holds the same name


def user_models_dir() -> Path:
    """The user's model folder (created by :func:`install_model`, not here)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "copilot" / "engines"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "copilot" / "engines"


def search_path() -> list[ModelsFolder]:
    """The folders searched for models, first wins; folders that do not exist are left out."""
    folders = [ModelsFolder("COPILOT_ENGINES", Path(p)) for p in os.environ.get("COPILOT_ENGINES", "").split(os.pathsep)
               if p]
    folders.append(ModelsFolder("user", user_models_dir()))
    folders += [ModelsFolder("package", PACKAGED_DIR), ModelsFolder("checkout", ENGINES_DIR)]
    shares = [Path(sys.prefix) / "share", Path("/usr/local/share"), Path("/usr/share")]
    folders += [ModelsFolder("system", s / "copilot" / "engines") for s in shares]
    seen: set[Path] = set()
    out = []
    for f in folders:
        key = f.path.expanduser().resolve()
        if key not in seen and key.is_dir():
            seen.add(key)
            out.append(ModelsFolder(f.where, f.path.expanduser()))
    return out


def _is_model(folder: Path) -> bool:
    return (folder / "card.json").is_file() and (folder / "model.onnx").is_file()


def find_models() -> list[FoundModel]:
    """Every model on the search path, in search order; a name found twice says which folder shadows it."""
    first: dict[str, Path] = {}
    found = []
    for root in search_path():
        try:
            folders = sorted(p for p in root.path.iterdir() if _is_model(p))
        except OSError as exc:  # an unreadable folder on the path hides nothing else
            log.warning("model folder %s (%s) skipped: %s", root.path, root.where, exc)
            continue
        for folder in folders:
            found.append(FoundModel(folder.name, folder, root.where, first.get(folder.name)))
            first.setdefault(folder.name, folder)
    return found


def find_model(name_or_path: str | Path) -> Path:
    """The folder of a model given by name (searched) or by folder path."""
    p = Path(name_or_path).expanduser()
    if _is_model(p):
        return p
    if (p / "card.json").is_file():
        raise ModelNotFound(f"{p} has a card.json but no model.onnx")
    for m in find_models():
        if m.name == str(name_or_path):
            return m.folder
    known = sorted({m.name for m in find_models()})
    searched = ", ".join(str(f.path) for f in search_path()) or "no model folder exists"
    raise ModelNotFound(f"no model {str(name_or_path)!r}: pass one of {known} or a folder with card.json + "
                            f"model.onnx (searched {searched}; add folders with COPILOT_ENGINES)")


def install_model(folder: Path, *, dest: Path | None = None, replace: bool = False) -> Path:
    """Copy a model folder (card.json, model.onnx and what the card names) into the user's folder; returns the copy."""
    from copilot.inference.card import load_card

    card, folder = load_card(folder)  # validates the card and model.onnx's sha256 before anything is copied
    target = (dest or user_models_dir()) / card.name
    if target.exists() and not replace:
        raise FileExistsError(f"{target} exists (pass --replace to overwrite it)")
    files = ["card.json", "model.onnx"]
    if card.reliability_regressor:
        files += [card.reliability_regressor, "reliability.json"]
    staging = target.with_name(f".{card.name}.installing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for f in files:
        if (folder / f).is_file():
            shutil.copy2(folder / f, staging / f)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def default_output_dir(name: str) -> Path:
    """Where a newly trained or adapted model is written: the checkout's engines/ if this is one, else the user's."""
    return (ENGINES_DIR if ENGINES_DIR.is_dir() else user_models_dir()) / name
