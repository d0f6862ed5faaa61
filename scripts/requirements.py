"""Print the requirements of the package and of one extra, read from pyproject.toml.

Used by the Dockerfiles so an image installs exactly what pyproject.toml declares (one
list, no drift), with TensorFlow left out when the image chooses its own distribution:

    python scripts/requirements.py operator > requirements.txt
    python scripts/requirements.py runtime --without tensorflow > requirements.txt
    python scripts/requirements.py --no-deps > no-deps.txt   # pip install --no-deps -r

``--no-deps`` prints ``[tool.modelplane] no-deps``: packages installed without their own
requirements (tensorflow-serving-api, whose ``tensorflow`` pin would pull a second TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extra: str, without: tuple[str, ...] = ()) -> list[str]:
    """Base dependencies plus those of ``extra``, minus any starting with a ``without`` name."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"requirements.py: no extra {extra!r} in {pyproject}")
    chosen = [*project.get("dependencies", []), *extras[extra]]
    return [req for req in chosen if not req.lower().startswith(without)]


def no_deps(pyproject: Path) -> list[str]:
    """``[tool.modelplane] no-deps``: requirements to install with ``pip --no-deps``."""
    tool = tomllib.loads(pyproject.read_text()).get("tool", {}).get("modelplane", {})
    return list(tool.get("no-deps", []))


def main() -> int:
    """Command line: ``requirements.py EXTRA [--without NAME ...] [--pyproject PATH]`` or
    ``requirements.py --no-deps``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", nargs="?")
    parser.add_argument("--without", action="append", default=[], help="leave out this package")
    parser.add_argument("--no-deps", action="store_true",
                        help="print the packages to install with pip --no-deps instead")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args()
    if args.no_deps:
        sys.stdout.write("".join(f"{line}\n" for line in no_deps(args.pyproject)))
        return 0
    if args.extra is None:
        parser.error("name an extra, or pass --no-deps")
    lines = requirements(args.pyproject, args.extra, tuple(n.lower() for n in args.without))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
