"""Promotion and rollback in the user's model folder (``copilot.inference.locate.user_models_dir``).

Promoting installs the adapted model as ``<user>/<name>`` (found before the shipped model of the same name, so
the daemon's hot swap picks it up); whatever was installed there before moves to ``<user>/.history/<name>/<version>``.
Rollback moves the current one to ``<user>/.rolled-back/<name>/<version>`` and restores the newest history entry,
or — when there is none — leaves the shipped parent to be found again. Rejected adaptations stay where they were
written (``adapted_root()``), with ``adaptation.json`` saying why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from copilot.errors import UserError
from copilot.inference.locate import install_model, user_models_dir


def adapted_root() -> Path:
    """Where adapted engines are written before the decision: ``<user data>/copilot/adapted/<name>/<version>``."""
    return user_models_dir().parent / "adapted"


def _version(folder: Path) -> str:
    return json.loads((folder / "card.json").read_text())["version"]


def promote(candidate: Path, user_dir: Path | None = None) -> Path:
    """Install ``candidate`` as the user's copy of its model; the previous copy goes to the history."""
    user_dir = user_dir or user_models_dir()
    name = json.loads((Path(candidate) / "card.json").read_text())["name"]
    current = user_dir / name
    if (current / "card.json").is_file():
        keep = user_dir / ".history" / name / _version(current)
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(current, keep)
    return install_model(Path(candidate), dest=user_dir, replace=True)


def rollback(name: str, user_dir: Path | None = None) -> tuple[str, str]:
    """Undo the last promotion of ``name``; returns (version removed, what is used now)."""
    user_dir = user_dir or user_models_dir()
    current = user_dir / name
    if not (current / "card.json").is_file():
        raise UserError(f"nothing to roll back: no adapted {name!r} is installed in {user_dir}")
    removed = _version(current)
    aside = user_dir / ".rolled-back" / name / removed
    aside.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(aside, ignore_errors=True)
    staging = current.with_name(f".{name}.rolling-back")
    current.rename(staging)
    history = user_dir / ".history" / name
    previous = sorted(history.iterdir(), key=lambda p: p.stat().st_mtime) if history.is_dir() else []
    if previous:
        previous[-1].rename(current)
        now = f"{name} {_version(current)} (from {user_dir})"
    else:
        from copilot.inference.locate import find_model

        try:
            folder = find_model(name)
            now = f"{name} {_version(folder)} ({folder})"
        except Exception:
            now = f"no {name} on the search path"
    staging.rename(aside)
    return removed, now
