"""Print the requirements of the package and of one extra, read from pyproject.toml.

Used by the Dockerfiles so an image installs exactly what pyproject.toml declares (one
list, no drift), with TensorFlow left out when the image chooses its own distribution:

    python scripts/requirements.py operator > requirements.txt
    python scripts/requirements.py runtime --without tensorflow > requirements.txt
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


def main() -> int:
    """Command line: ``requirements.py EXTRA [--without NAME ...] [--pyproject PATH]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra")
    parser.add_argument("--without", action="append", default=[], help="leave out this package")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args()
    lines = requirements(args.pyproject, args.extra, tuple(n.lower() for n in args.without))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
