"""Model repository discovery: which versions exist on disk and which of them to serve.

Layout, as TF Serving reads it: a base folder holding integer-named version folders
(``<base>/1/``, ``<base>/7/``), each a SavedModel (``saved_model.pb``) or holding one Keras
file (``.keras`` / ``.h5``). A bare SavedModel folder, a folder holding one Keras file, or a
single Keras file is served as version 1. Hidden folders (``.building-*``, ``.tmp``) and
names that are not integers are ignored, as TF Serving ignores them, so a version being
copied in under a temporary name never gets picked up half-written.

The version policy follows TF Serving's ``model_version_policy``: ``latest`` (the newest),
``latest:N`` (the N newest), ``all``, or an explicit list ``1,3``; ``model_version`` pins one.
Labels (``stable=1,canary=2``) name served versions, like TF Serving's ``version_labels``.
Every problem is a :class:`~modelplane_runtime.errors.ModelLoadError` naming the path or
setting, raised at start-up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.settings import ModelFormat, RuntimeSettings

Format = Literal["savedmodel", "keras"]
KERAS_SUFFIXES = (".keras", ".h5")
CONFIG_FILE = "modelplane.yaml"
"""Optional pre/post-processing config (see processing.py), in the base or a version folder."""

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class VersionSource:
    """One version on disk: where it is, what format, and its processing config (if any)."""

    version: int
    path: Path
    format: Format
    config: Path | None = None


@dataclass(frozen=True)
class Repository:
    """The versions to serve and their labels."""

    base: Path
    versions: tuple[VersionSource, ...]
    labels: dict[str, int]

    def labels_of(self, version: int) -> tuple[str, ...]:
        """Labels that point at ``version``, sorted."""
        return tuple(sorted(label for label, v in self.labels.items() if v == version))


def _is_hidden(path: Path) -> bool:
    return path.name.startswith((".", "_"))


def _keras_files(folder: Path) -> list[Path]:
    return sorted(
        child
        for child in folder.iterdir()
        if child.is_file() and child.suffix in KERAS_SUFFIXES and not _is_hidden(child)
    )


def _is_savedmodel(folder: Path) -> bool:
    return (folder / "saved_model.pb").is_file() or (folder / "saved_model.pbtxt").is_file()


def _detect(path: Path, wanted: ModelFormat) -> tuple[Path, Format]:
    """The model inside a version folder (or the file itself), checked against ``wanted``."""
    if path.is_file():
        if path.suffix not in KERAS_SUFFIXES:
            raise ModelLoadError(f"{path}: not a Keras file (expected .keras or .h5)")
        found: tuple[Path, Format] = (path, "keras")
    elif _is_savedmodel(path) and not (wanted == "keras" and _keras_files(path)):
        # A folder may hold both (a Keras model exported beside its .keras file); the
        # format setting picks, SavedModel by default.
        found = (path, "savedmodel")
    else:
        keras_files = _keras_files(path)
        if len(keras_files) > 1:
            names = ", ".join(child.name for child in keras_files)
            raise ModelLoadError(f"{path}: more than one Keras file ({names}); keep one")
        if not keras_files:
            raise ModelLoadError(
                f"{path}: no model found (expected saved_model.pb or one .keras/.h5 file)"
            )
        found = (keras_files[0], "keras")
    if wanted != "auto" and found[1] != wanted:
        raise ModelLoadError(
            f"{path}: MODELPLANE_MODEL_FORMAT is {wanted!r} but the model is a {found[1]}"
        )
    return found


def _config_for(version_dir: Path, base: Path) -> Path | None:
    for folder in (version_dir, base):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def scan(base: Path, model_format: ModelFormat = "auto") -> dict[int, VersionSource | str]:
    """Every version under ``base``: its source, or why it cannot be served (a message)."""
    if not base.exists():
        raise ModelLoadError(f"model path {base} does not exist")
    if base.is_file():
        source, fmt = _detect(base, model_format)
        return {1: VersionSource(1, source, fmt, _config_for(base.parent, base.parent))}
    if not any(True for _ in base.iterdir()):
        raise ModelLoadError(f"model path {base} is empty")
    version_dirs = {
        int(child.name): child
        for child in base.iterdir()
        if child.is_dir() and child.name.isdigit() and not _is_hidden(child)
    }
    if not version_dirs:
        # Not a versioned repository: a bare SavedModel or a folder with one Keras file.
        source, fmt = _detect(base, model_format)
        return {1: VersionSource(1, source, fmt, _config_for(base, base))}
    found: dict[int, VersionSource | str] = {}
    for version, folder in sorted(version_dirs.items()):
        try:
            source, fmt = _detect(folder, model_format)
        except ModelLoadError as exc:
            found[version] = str(exc)
        else:
            found[version] = VersionSource(version, source, fmt, _config_for(folder, base))
    return found


def _given(name: str, value: object) -> str:
    """How a message quotes a setting: ``--versions '1,5'`` or ``MODELPLANE_...='1,5'``."""
    return f"{name}={value!r}" if name.startswith("MODELPLANE_") else f"{name} {value!r}"


def select_versions(
    available: list[int], policy: str, pinned: int | None = None,
    *, names: tuple[str, str] = ("MODELPLANE_MODEL_VERSIONS", "MODELPLANE_MODEL_VERSION"),
) -> list[int]:
    """Apply the version policy to the versions on disk; newest first.

    ``names`` are how the user gave the policy and the pin (flag or variable: messages
    quote what they typed).
    """
    newest_first = sorted(available, reverse=True)
    policy_name, pinned_name = names
    if pinned is not None:
        if pinned not in available:
            raise ModelLoadError(
                f"{_given(pinned_name, pinned)} is not in the repository "
                f"(versions found: {_list(newest_first)})"
            )
        return [pinned]
    text = policy.strip().lower()
    if text in ("", "latest"):
        return newest_first[:1]
    if text == "all":
        return newest_first
    if text.startswith("latest:"):
        count = text.removeprefix("latest:").strip()
        if not count.isdigit() or int(count) < 1:
            raise ModelLoadError(
                f"{_given(policy_name, policy)}: latest:N needs a positive integer N"
            )
        return newest_first[: int(count)]
    wanted: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ModelLoadError(
                f"{_given(policy_name, policy)}: expected latest, latest:N, all, "
                f"or a list of version numbers like 1,3"
            )
        wanted.append(int(part))
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ModelLoadError(
            f"{_given(policy_name, policy)}: version(s) {_list(missing)} not in the "
            f"repository (versions found: {_list(newest_first)})"
        )
    return sorted(set(wanted), reverse=True)


def wanted_versions(usable: list[int], policy: str, pinned: int | None) -> list[int]:
    """The policy applied to the versions there are, never an error: newest first.

    As ``select_versions``, except that versions an explicit list or pin names but which are
    not there yet are waited for (polling) rather than refused (start-up).
    """
    if pinned is not None:
        return [pinned] if pinned in usable else []
    text = policy.strip().lower()
    if text in ("", "all") or text.startswith("latest"):
        return select_versions(usable, policy) if usable else []
    listed = {int(part) for part in text.split(",") if part.strip().isdigit()}
    return sorted(listed & set(usable), reverse=True)


def parse_labels(
    text: str, served: list[int], name: str = "MODELPLANE_MODEL_LABELS"
) -> dict[str, int]:
    """``stable=1,canary=2`` -> ``{"stable": 1, "canary": 2}``; each must name a served version
    (``name``: the flag or variable the labels came from, for messages)."""
    labels: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        label, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not _LABEL.match(label) or not value.isdigit():
            raise ModelLoadError(
                f"{name}: {part!r} is not label=version (e.g. stable=1)"
            )
        if label in labels:
            raise ModelLoadError(f"{name}: label {label!r} given twice")
        if int(value) not in served:
            raise ModelLoadError(
                f"{name}: label {label!r} points at version {value}, which is "
                f"not served (served: {_list(sorted(served, reverse=True))})"
            )
        labels[label] = int(value)
    return labels


def open_repository(settings: RuntimeSettings) -> Repository:
    """Scan ``settings.model_path`` and apply the version policy and labels."""
    base = settings.model_path
    found = scan(base, settings.model_format)
    usable = {v: s for v, s in found.items() if isinstance(s, VersionSource)}
    broken = {v: s for v, s in found.items() if isinstance(s, str)}
    if not usable:
        reasons = "; ".join(broken.values())
        raise ModelLoadError(f"no loadable version in {base}: {reasons}")
    names = (settings.origin("model_versions"), settings.origin("model_version"))
    policy = settings.model_versions.strip().lower()
    explicit = bool(policy) and not policy.startswith(("latest", "all"))
    if settings.model_version is not None or explicit:
        # Versions named explicitly must load; a broken one is an error with its reason.
        chosen = select_versions(
            sorted(found), settings.model_versions, settings.model_version, names=names
        )
        for version in chosen:
            if version in broken:
                raise ModelLoadError(broken[version])
    else:
        # latest / all: a broken folder (say, still being copied) is skipped, not fatal.
        chosen = select_versions(sorted(usable), settings.model_versions, names=names)
    labels = parse_labels(settings.model_labels, chosen, settings.origin("model_labels"))
    return Repository(base, tuple(usable[v] for v in chosen), labels)


def size_on_disk(path: Path) -> int:
    """Bytes of a version on disk: the file, or every file under the folder (a symlinked
    file counts its target, as the loader reads it; unreadable entries count 0)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # a dangling link, or a file removed while we walked
    return total


def _list(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) or "none"
