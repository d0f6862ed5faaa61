"""scripts/install_debian_tools.py: prometheus, promtool and wrk from Debian's packages.

The extraction is tried on packages built here by the real ``dpkg-deb``; the whole install
(``apt-get update`` into a private list, ``apt-get download``, extraction) runs for real, as
an unprivileged user when the suite runs as root, in the slow suite (it downloads ~30 MB).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "install_debian_tools.py"
_spec = importlib.util.spec_from_file_location("install_debian_tools", SCRIPT)
assert _spec is not None and _spec.loader is not None
tools = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tools  # a script, not a package: loaded from its path
_spec.loader.exec_module(tools)

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="not a Debian-family machine: no dpkg-deb"
)


def _deb(tmp_path: Path, files: dict[str, bytes], links: dict[str, str]) -> Path:
    """A real .deb holding ``files`` and symbolic ``links`` (path -> target)."""
    tree = tmp_path / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: sample\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: a test package\n"
    )
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    for name, target in links.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).symlink_to(target)
    deb = tmp_path / "sample.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True, timeout=60)
    return deb


def test_named_files_and_library_links_are_read_from_the_package(tmp_path: Path) -> None:
    deb = _deb(
        tmp_path,
        {"usr/bin/tool": b"\x7fELF tool", "usr/lib/x86_64-linux-gnu/libx.so.2.1.0": b"lib",
         "usr/share/doc/sample/README": b"doc"},
        {"usr/lib/x86_64-linux-gnu/libx.so.2": "libx.so.2.1.0"},
    )
    found = tools.read_members(deb, ["usr/bin/tool", "libx.so.2"])
    assert found == {"usr/bin/tool": b"\x7fELF tool", "libx.so.2": b"lib"}


@pytest.mark.parametrize(
    ("wanted", "message"),
    [("usr/bin/absent", "holds no usr/bin/absent"),
     ("absent.so", "expected one absent.so"),
     ("usr/bin", "is not a regular file"),
     ("usr/lib/loop", "too many symbolic links")],
)
def test_a_missing_or_odd_member_is_refused(tmp_path: Path, wanted: str, message: str) -> None:
    deb = _deb(tmp_path, {"usr/bin/tool": b"t"},
               {"usr/lib/loop": "loop2", "usr/lib/loop2": "loop"})
    with pytest.raises(SystemExit, match=message):
        tools.read_members(deb, [wanted])


def test_a_link_out_of_the_package_is_never_followed_on_disk(tmp_path: Path) -> None:
    # A link to /etc/hostname names a file that exists on this machine, not in the package.
    deb = _deb(tmp_path, {"usr/bin/tool": b"t"}, {"usr/lib/libevil.so.1": "/etc/hostname"})
    with pytest.raises(SystemExit, match="holds no"):
        tools.read_members(deb, ["libevil.so.1"])


def test_installed_tools_are_kept_and_reported(tmp_path: Path) -> None:
    """Tools that already run are not downloaded again (no apt-get call at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools.TOOLS:  # stand-ins that answer their version line as the real ones do
        script = bin_dir / tool.name
        script.write_text(f"#!/bin/sh\necho '{tool.banner}stand-in'\n")
        script.chmod(0o755)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dest",
         str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PATH": "/nonexistent"},  # an apt-get call would fail
    )
    for tool in tools.TOOLS:
        assert f"{bin_dir / tool.name}: {tool.banner}stand-in" in done.stdout
    assert not (tmp_path / "apt").exists()


@pytest.mark.slow
def test_a_fresh_install_without_root_gives_running_tools() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get on this machine")
    with tempfile.TemporaryDirectory(prefix="debian-tools-") as folder:
        _install_and_check(Path(folder))


def _install_and_check(home: Path) -> None:
    dest = home / "tools"
    dest.mkdir()
    command = [sys.executable, str(SCRIPT),
               "--dest", str(dest)]
    if os.geteuid() == 0:
        # As nobody: the script must need no root (and cannot write outside its folder).
        # pytest's own tmp_path sits under a folder only root may enter: a plain temp folder.
        shutil.chown(home, "nobody")
        shutil.chown(dest, "nobody")
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    for tool in tools.TOOLS:
        line = tools.version_line(dest / "bin" / tool.name, tool.version_args, tool.banner)
        assert line is not None, f"{tool.name} does not run"
        assert f"{dest / 'bin' / tool.name}: {line}" in done.stdout
    # The lists and packages are gone once the tools are in place.
    assert sorted(p.name for p in dest.iterdir()) == ["bin", "cache", "lib"]
