"""Install Debian's prometheus, promtool and wrk into .tools/ (git-ignored), without root.

The default test suite drives them for real: Prometheus scrapes the runtime, promtool checks
the Grafana dashboard's PromQL, wrk loads the benchmark harness. They come from Debian's
packages through apt's own client, run as whoever runs this script: ``apt-get update`` into a
private list folder (.tools/apt, so neither root nor fresh system lists are needed),
``apt-get download`` of the .deb files, and ``dpkg-deb --fsys-tarfile`` to read them. Only
the named files are extracted, under fixed names, so nothing in a package can write
elsewhere, and nothing is installed system-wide. wrk links LuaJIT, which is extracted beside
it; ``.tools/bin/wrk`` is a wrapper that points the loader there.

Idempotent: tools already in .tools/bin that run are kept. Without apt-get (not a Debian or
Ubuntu machine) tools already on PATH are accepted; otherwise it says what to install.

Usage: python3 scripts/install_debian_tools.py [--force] [--dest DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Tool:
    """A command the tests run, the package it comes from, and how to see that it runs."""

    name: str
    package: str
    member: str
    """The file's path inside the package."""
    version_args: tuple[str, ...]
    banner: str
    """Text its version output starts with."""


TOOLS = (
    Tool("prometheus", "prometheus", "usr/bin/prometheus", ("--version",), "prometheus, version"),
    Tool("promtool", "prometheus", "usr/bin/promtool", ("--version",), "promtool, version"),
    Tool("wrk", "wrk", "usr/bin/wrk", ("-v",), "wrk "),
)
LUAJIT_PACKAGE = "libluajit-5.1-2"
LUAJIT_SONAME = "libluajit-5.1.so.2"
WRK_WRAPPER = """#!/bin/sh
# wrk from Debian's package with its LuaJIT beside it (scripts/install_debian_tools.py).
here=$(dirname "$0")/../lib/wrk
LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/wrk" "$@"
"""


def version_line(path: Path | str, args: tuple[str, ...], banner: str) -> str | None:
    """The first line of the tool's version output, or None when it does not run."""
    try:
        done = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    # wrk -v prints its banner and usage, then exits 1: the banner is what says it runs.
    out = (done.stdout or done.stderr).strip()
    return out.splitlines()[0] if out.startswith(banner) else None


def missing(bin_dir: Path) -> list[Tool]:
    """The tools in ``bin_dir`` that are absent or do not run."""
    return [t for t in TOOLS if version_line(bin_dir / t.name, t.version_args, t.banner) is None]


def _apt(tools: Path, *args: str) -> list[str]:
    """An apt-get command that keeps its package lists and caches in ``tools``/apt."""
    state = tools / "apt"
    options = {
        "Dir::State::Lists": state / "lists",
        "Dir::Cache": state / "cache",
    }
    command = ["apt-get", "-q"]
    for key, value in options.items():
        command += ["-o", f"{key}={value}"]
    if os.geteuid() == 0:
        # As root apt hands downloads to its _apt user, which cannot write into our folders.
        command += ["-o", "APT::Sandbox::User=root"]
    return [*command, *args]


def download(tools: Path, packages: list[str]) -> dict[str, Path]:
    """Fetch the packages' .deb files into tools/cache/debian; package name -> file."""
    for folder in ("apt/lists/partial", "apt/cache/archives/partial", "cache/debian"):
        (tools / folder).mkdir(parents=True, exist_ok=True)
    debs = tools / "cache" / "debian"
    for deb in debs.glob("*.deb"):
        deb.unlink()  # never mix an old download with a new one
    subprocess.run(_apt(tools, "update"), check=True, stdout=subprocess.DEVNULL)
    subprocess.run(_apt(tools, "download", *packages), check=True, cwd=debs,
                   stdout=subprocess.DEVNULL)
    found: dict[str, Path] = {}
    for deb in debs.glob("*.deb"):
        found[deb.name.split("_", 1)[0]] = deb
    absent = sorted(set(packages) - set(found))
    if absent:
        raise SystemExit(f"apt-get download produced no .deb for {', '.join(absent)}")
    return found


def read_members(deb: Path, wanted: list[str]) -> dict[str, bytes]:
    """The bytes of regular files in a .deb, following symbolic links inside it.

    A wanted name without a slash is a file name found anywhere in the package (a shared
    library's folder depends on the architecture); one with a slash is a path.
    """
    tar_bytes = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        found: dict[str, bytes] = {}
        for want in wanted:
            if "/" in want:
                name = want
            else:
                named = [n for n in members if os.path.basename(n) == want]
                if len(named) != 1:
                    raise SystemExit(f"expected one {want} in {deb.name}, found {named}")
                name = named[0]
            found[want] = _read(tar, members, name, deb)
    return found


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str,
          deb: Path) -> bytes:
    for _ in range(8):  # a link chain longer than this is not a shared library's
        member = members.get(name)
        if member is None:
            raise SystemExit(f"{deb.name} holds no {name}")
        if member.issym():
            name = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
            continue
        if not member.isfile():
            raise SystemExit(f"{name} in {deb.name} is not a regular file")
        stream = tar.extractfile(member)
        assert stream is not None  # a regular file always has a stream
        return stream.read()
    raise SystemExit(f"{name} in {deb.name}: too many symbolic links")


def place(target: Path, data: bytes, mode: int = 0o755) -> None:
    """Write ``target`` atomically: a concurrent reader never sees half a binary."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.chmod(mode)
    partial.replace(target)


def install(tools: Path) -> None:
    """Download the packages and extract the tools into tools/bin (wrk into tools/lib/wrk)."""
    debs = download(tools, sorted({t.package for t in TOOLS} | {LUAJIT_PACKAGE}))
    bin_dir, wrk_dir = tools / "bin", tools / "lib" / "wrk"
    for package, deb in debs.items():
        tools_here = [t for t in TOOLS if t.package == package]
        files = read_members(deb, [t.member for t in tools_here] or [LUAJIT_SONAME])
        for tool in tools_here:
            place((wrk_dir if tool.name == "wrk" else bin_dir) / tool.name, files[tool.member])
        if package == LUAJIT_PACKAGE:
            place(wrk_dir / LUAJIT_SONAME, files[LUAJIT_SONAME], 0o644)
    place(bin_dir / "wrk", WRK_WRAPPER.encode())
    # The lists and packages served their purpose (the next install refreshes them anyway).
    shutil.rmtree(tools / "apt")
    shutil.rmtree(tools / "cache" / "debian")


def main(argv: list[str] | None = None) -> int:
    """Install (or verify) the tools and print where each one is and its version."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if they run")
    parser.add_argument("--dest", type=Path, default=ROOT / ".tools",
                        help="the tools folder (default .tools)")
    args = parser.parse_args(argv)
    tools = args.dest.resolve()
    bin_dir = tools / "bin"
    todo = TOOLS if args.force else missing(bin_dir)
    if todo and shutil.which("apt-get") and shutil.which("dpkg-deb"):
        install(tools)
        todo = missing(bin_dir)
        if todo:
            raise SystemExit(f"installed, but {', '.join(t.name for t in todo)} does not run")
    for tool in TOOLS:
        path: Path | str = bin_dir / tool.name
        if tool in todo:
            # No apt here: one already on PATH will do (the tests look in .tools/bin first).
            path = shutil.which(tool.name) or ""
            if not path:
                raise SystemExit(
                    f"{tool.name} is missing and this machine has no apt-get: install "
                    f"{tool.package} with its package manager, or put {tool.name} in {bin_dir}"
                )
        line = version_line(path, tool.version_args, tool.banner)
        if line is None:
            raise SystemExit(f"{path} does not run ({' '.join(tool.version_args)} failed)")
        print(f"{path}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
