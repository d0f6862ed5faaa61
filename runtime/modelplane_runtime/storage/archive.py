"""Safe extraction of tar and zip archives into an empty folder.

An archive is untrusted input. Every member is checked here before anything is written,
whether or not ``tarfile``'s ``data`` filter (PEP 706) also passes it:

- names: no absolute paths, drive letters, backslashes, NUL bytes or ``..`` components;
- types: regular files, folders, symlinks and hardlinks only (no devices, fifos, sockets);
- links: a symlink's target must be relative and stay inside the model, first as written
  and then once more after everything is on disk (``realpath``, which follows chains of
  links); a hardlink must name a regular file extracted before it and becomes a copy;
- writes: symlinks are created last, so no file is ever written through one; files are
  opened with ``O_NOFOLLOW | O_EXCL`` and every parent folder is checked to be a real folder;
- size: the unpacked total is capped, and so is the unpacked/packed ratio (zip bombs),
  counted on the declared sizes before writing and on the bytes actually written.

The caller extracts into a fresh folder and only moves it into place when this returns,
so a refused archive leaves nothing behind (see staging.py).
"""

from __future__ import annotations

import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Final, Literal

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.settings import ENV_PREFIX, StorageSettings

_CHUNK: Final = 1024 * 1024
_MAX_LINK_TARGET: Final = 4096
_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_SKIPPED_TOP: Final = frozenset({"__MACOSX"})  # resource forks that macOS Finder adds to zips

EntryType = Literal["file", "dir", "symlink", "hardlink"]


@dataclass
class _Entry:
    """One archive member, the same for tar and zip."""

    name: str
    type: EntryType
    size: int = 0
    link: str = ""
    executable: bool = False
    open: Callable[[], IO[bytes]] | None = None
    second_opinion: Callable[[], None] | None = None
    """Another check (tarfile's data filter), run after ours so ours are always exercised."""


@dataclass
class _Budget:
    """Counts unpacked bytes against the size and ratio limits."""

    settings: StorageSettings
    packed: int
    used: int = 0

    def take(self, amount: int, member: str) -> None:
        """Count ``amount`` more bytes; raises once a limit is passed."""
        self.check(amount, member)
        self.used += amount

    def check(self, amount: int, member: str) -> None:
        """Raise if ``amount`` more bytes would pass a limit (counts nothing)."""
        total = self.used + amount
        limit = self.settings.max_extract_bytes
        if total > limit:
            raise StorageError(
                f"archive unpacks to more than {limit} bytes (at member {member!r}); "
                f"raise {ENV_PREFIX}MAX_EXTRACT_BYTES if the model really is that large"
            )
        ratio = total / max(self.packed, 1)
        if total > self.settings.ratio_floor_bytes and ratio > self.settings.max_ratio:
            raise StorageError(
                f"archive expands more than {self.settings.max_ratio:g} times its size "
                f"(at member {member!r}): refusing a likely zip bomb; "
                f"see {ENV_PREFIX}MAX_RATIO"
            )


@dataclass
class _Extraction:
    root: Path
    settings: StorageSettings
    budget: _Budget
    files: set[PurePosixPath] = field(default_factory=set)
    dirs: set[PurePosixPath] = field(default_factory=set)
    links: dict[PurePosixPath, str] = field(default_factory=dict)
    members: int = 0


def member_path(name: str) -> PurePosixPath | None:
    """The safe relative path of member ``name``; None for the archive root itself."""
    if "\x00" in name:
        raise StorageError(f"archive member {name!r} has a NUL byte in its name")
    if "\\" in name:
        raise StorageError(f"archive member {name!r} has a backslash in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise StorageError(f"archive member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"archive member {name!r} has a '..' component (path traversal)")
    return PurePosixPath(*parts) if parts else None


def _check_link_target(path: PurePosixPath, target: str) -> None:
    """A symlink target must be relative and, read lexically, stay inside the root."""
    if not target or "\x00" in target or len(target) > _MAX_LINK_TARGET:
        raise StorageError(f"archive symlink {str(path)!r} has an invalid target")
    if target.startswith("/") or "\\" in target or _DRIVE.match(target):
        raise StorageError(
            f"archive symlink {str(path)!r} points to an absolute path ({target!r})"
        )
    resolved = os.path.normpath(os.path.join(str(path.parent), target))
    if resolved == ".." or resolved.startswith("../"):
        raise StorageError(
            f"archive symlink {str(path)!r} points outside the model ({target!r})"
        )


def _parents_are_real_dirs(state: _Extraction, path: PurePosixPath) -> None:
    """Create ``path``'s parents, refusing any that exists as something other than a folder."""
    current = state.root
    for index, part in enumerate(path.parts[:-1]):
        current = current / part
        prefix = PurePosixPath(*path.parts[: index + 1])
        if prefix in state.links:
            raise StorageError(
                f"archive member {str(path)!r} would be written through the symlink "
                f"{str(prefix)!r}"
            )
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            os.chmod(current, 0o755)
            state.dirs.add(prefix)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise StorageError(
                f"archive member {str(path)!r} needs {str(prefix)!r} to be a folder, "
                "but the archive made it something else"
            )


def _write(state: _Extraction, path: PurePosixPath, entry: _Entry) -> None:
    _parents_are_real_dirs(state, path)
    target = state.root / path
    if path in state.dirs or path in state.links:
        raise StorageError(f"archive member {str(path)!r} conflicts with an earlier member")
    if path in state.files:
        os.unlink(target)  # a repeated name: the later member wins, as with tar itself
    mode = 0o755 if entry.executable else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    assert entry.open is not None
    written = 0
    with entry.open() as source, os.fdopen(os.open(target, flags, mode), "wb") as sink:
        os.fchmod(sink.fileno(), mode)  # exact mode whatever the umask: the runtime must read it
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > entry.size:
                raise StorageError(
                    f"archive member {entry.name!r} holds more data than its header declares"
                )
            state.budget.take(len(chunk), entry.name)
            sink.write(chunk)
    state.files.add(path)


def _hardlink_source(state: _Extraction, entry: _Entry) -> PurePosixPath:
    """The already-extracted regular file a hardlink names; anything else is refused."""
    try:
        source = member_path(entry.link)
    except StorageError:
        source = None
    if source is None or source not in state.files:
        raise StorageError(
            f"archive hardlink {entry.name!r} points to {entry.link!r}, which is not a file "
            "extracted before it (links outside the model are refused)"
        )
    return source


def _copy_hardlink(state: _Extraction, path: PurePosixPath, entry: _Entry) -> None:
    source = _hardlink_source(state, entry)
    size = os.lstat(state.root / source).st_size
    # A hardlink declares no size of its own; its copy counts like any file.
    state.budget.check(size, entry.name)

    def reopen() -> IO[bytes]:
        fd = os.open(state.root / source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")

    _write(state, path, _Entry(entry.name, "file", size, executable=entry.executable, open=reopen))


def _add(state: _Extraction, entry: _Entry) -> None:
    state.members += 1
    if state.members > state.settings.max_members:
        raise StorageError(
            f"archive has more than {state.settings.max_members} members; "
            f"see {ENV_PREFIX}MAX_MEMBERS"
        )
    path = member_path(entry.name)
    if path is None:
        if entry.type != "dir":
            raise StorageError(f"archive member {entry.name!r} has an empty name")
        return
    if path.parts[0] in _SKIPPED_TOP:
        return
    if entry.type == "symlink":
        _check_link_target(path, entry.link)
    elif entry.type == "hardlink":
        _hardlink_source(state, entry)
    if entry.second_opinion is not None:
        entry.second_opinion()
    if entry.type == "dir":
        _parents_are_real_dirs(state, path / "_")
        return
    if entry.type == "symlink":
        if path in state.links or path in state.files or path in state.dirs:
            raise StorageError(f"archive symlink {entry.name!r} conflicts with another member")
        state.links[path] = entry.link  # created after every file: nothing is written through it
        return
    if entry.type == "hardlink":
        _copy_hardlink(state, path, entry)
        return
    # Check the declared size first so a bomb is refused before its bytes are inflated.
    state.budget.check(entry.size, entry.name)
    _write(state, path, entry)


def _create_links(state: _Extraction) -> None:
    for path, target in sorted(state.links.items()):
        _parents_are_real_dirs(state, path)
        try:
            os.symlink(target, state.root / path)
        except FileExistsError:
            raise StorageError(
                f"archive symlink {str(path)!r} conflicts with another member"
            ) from None


def verify_links(root: Path, links: list[Path]) -> None:
    """Refuse if any of ``links`` (after every link exists) resolves outside ``root``."""
    real_root = os.path.realpath(root)
    for link in links:
        resolved = os.path.realpath(link)
        if os.path.commonpath([real_root, resolved]) != real_root:
            name = os.path.relpath(link, root)
            raise StorageError(
                f"archive symlink {name!r} resolves outside the model "
                f"(through {os.readlink(link)!r})"
            )


def _tar_entries(archive: tarfile.TarFile, root: Path) -> Iterator[_Entry]:
    for member in archive:  # lazy: a bomb is refused before the rest is inflated
        entry = _Entry(member.name, "file", member.size, executable=bool(member.mode & 0o100))
        entry.second_opinion = lambda member=member: _data_filter(member, root)
        if member.isreg():
            entry.open = lambda member=member: _tar_open(archive, member)
        elif member.isdir():
            entry.type = "dir"
        elif member.issym():
            entry.type, entry.link = "symlink", member.linkname
        elif member.islnk():
            entry.type, entry.link = "hardlink", member.linkname
        else:
            raise StorageError(
                f"archive member {member.name!r} is a device, fifo or other special file"
            )
        yield entry


def _data_filter(member: tarfile.TarInfo, root: Path) -> None:
    """tarfile's own ``data`` filter (Python 3.11.4+), where this Python has it."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, str(root))
    except tarfile.FilterError as exc:
        raise StorageError(f"archive member {member.name!r} refused: {exc}") from None


def _tar_open(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    stream = archive.extractfile(member)
    if stream is None:
        raise StorageError(f"archive member {member.name!r} cannot be read")
    return stream


def _zip_entries(archive: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            raise StorageError(f"archive member {info.filename!r} is encrypted")
        mode = info.external_attr >> 16
        entry = _Entry(info.filename, "file", info.file_size, executable=bool(mode & 0o100))
        if stat.S_ISLNK(mode):
            if info.file_size > _MAX_LINK_TARGET:
                raise StorageError(f"archive symlink {info.filename!r} has an invalid target")
            entry.type = "symlink"
            entry.link = archive.read(info).decode("utf-8", errors="replace")
        elif info.is_dir() or stat.S_ISDIR(mode):
            entry.type = "dir"
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # zips from Windows have no type bits
            raise StorageError(
                f"archive member {info.filename!r} is a device, fifo or other special file"
            )
        else:
            entry.open = lambda info=info: archive.open(info)
        yield entry


def _model_root(root: Path) -> Path:
    """``root``, or its only entry when that is a folder not named like a version.

    ``tar czf model.tar.gz my_model/`` is the usual way to pack a model, and the runtime
    wants the repository itself (``1/``, ``2/``) or the SavedModel itself at the top.
    """
    entries = list(root.iterdir())
    if len(entries) == 1:
        only = entries[0]
        if only.is_dir() and not only.is_symlink() and not only.name.isdigit():
            return only
    return root


def extract(archive: Path, root: Path, settings: StorageSettings, *, zip_format: bool) -> Path:
    """Unpack ``archive`` (tar of any compression, or zip) into the empty folder ``root``.

    Returns the model's root: ``root`` itself, or the archive's single top-level folder.
    """
    state = _Extraction(root, settings, _Budget(settings, archive.stat().st_size))
    try:
        if zip_format:
            with zipfile.ZipFile(archive) as opened:
                for entry in _zip_entries(opened):
                    _add(state, entry)
        else:
            with tarfile.open(archive, mode="r:*") as opened_tar:
                for entry in _tar_entries(opened_tar, root):
                    _add(state, entry)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError,
            OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a local I/O problem (disk full), reported by the caller
        kind = "zip" if zip_format else "tar"
        raise StorageError(f"archive is not a valid {kind} file: {exc}") from None
    if not state.files and not state.links:
        raise StorageError("archive contains no files")
    _create_links(state)
    model_root = _model_root(root)
    verify_links(model_root, [root / path for path in state.links])
    return model_root
