"""Build a model beside its destination, then swap it in: dest ends up complete or untouched.

Behaviour for an init container that may run again (pod restart, re-fetch):

- ``dest`` does not exist: the model is built in a hidden folder next to it
  (``.<name>.modelplane-fetch-*``) and renamed to ``dest`` (one atomic rename).
- ``dest`` is an existing folder, typically the emptyDir mount point ``/mnt/models`` that
  cannot be renamed: the model is built in a hidden folder inside it
  (``.modelplane-fetch-*``), and only once it is complete are the old entries moved aside
  and the new ones renamed in. Each rename is atomic; the set of them is not, but the
  runtime container starts only after the init container has exited 0, and a run that is
  killed half-way is repaired by the next one, which starts by removing its leftovers.
- Any failure while building removes the hidden folder and leaves ``dest`` as it was.

So a fetch always replaces the content of ``dest``; fetching the same URI again yields the
same content. One fetch per destination at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from modelplane_runtime.storage.errors import StorageError

log = logging.getLogger("modelplane.storage")

WORK_PREFIX: Final = ".modelplane-fetch-"
OLD_PREFIX: Final = ".modelplane-old-"


def _remove_leftovers(folder: Path, prefixes: tuple[str, ...]) -> None:
    for entry in folder.iterdir():
        if entry.name.startswith(prefixes) and entry.is_dir() and not entry.is_symlink():
            log.info("removing %s, left over by an interrupted fetch", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _check_model(model: Path) -> None:
    if not model.is_dir() or not any(model.iterdir()):
        raise StorageError("the fetched model is empty")


def install(dest: Path, build: Callable[[Path], Path]) -> None:
    """Call ``build(work)`` in an empty folder on dest's filesystem, then install its result.

    ``build`` returns the folder (``work`` or one inside it) whose content becomes ``dest``.
    """
    dest = Path(os.path.abspath(dest))
    if dest.exists() and not dest.is_dir():
        raise StorageError(f"destination {dest} exists and is not a folder")
    in_place = dest.is_dir()
    if in_place:
        _remove_leftovers(dest, (WORK_PREFIX, OLD_PREFIX))
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=dest))
    else:
        created = _make_parents(dest.parent)
        prefix = f".{dest.name}{WORK_PREFIX}"
        _remove_leftovers(dest.parent, (prefix,))
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    try:
        model = build(work)
        _check_model(model)
        if in_place:
            _swap_into(dest, model, work)
        else:
            os.chmod(model, 0o755)  # readable by the runtime container whatever the umask
            os.rename(model, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if not in_place:
            for folder in created:  # deepest first; only folders this call made
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    made: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            made.insert(0, path)
    except OSError as exc:
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
    return made


def _swap_into(dest: Path, model: Path, work: Path) -> None:
    """Move dest's entries aside and the model's in; on failure (a full disk can refuse a
    rename) put the old entries back."""
    old = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=dest))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for entry in dest.iterdir():
            if entry not in (work, old):
                os.rename(entry, old / entry.name)
                moved_out.append(entry.name)
        for entry in model.iterdir():
            os.rename(entry, dest / entry.name)
            moved_in.append(entry.name)
    except OSError:
        for name in moved_in:
            with contextlib.suppress(OSError):
                os.rename(dest / name, model / name)
        for name in moved_out:
            with contextlib.suppress(OSError):
                os.rename(old / name, dest / name)
        with contextlib.suppress(OSError):
            old.rmdir()  # only when everything went back; else the next run's leftover sweep
        raise
    shutil.rmtree(old, ignore_errors=True)
