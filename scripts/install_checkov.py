"""Install checkov into its own virtual environment, .tools/checkov (git-ignored).

checkov pins old versions of packages the project also uses (packaging, python-dateutil,
botocore), so it must not share the project's environment. Idempotent: an existing
environment with the pinned version is kept. tests/integration/ship finds it there.

Usage: python3 scripts/install_checkov.py [--force]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".tools" / "checkov"
VERSION = "3.3.30"


def installed_version() -> str | None:
    """The checkov version in .tools/checkov, or None."""
    binary = TARGET / "bin" / "checkov"
    if not binary.is_file():
        return None
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> int:
    """Create .tools/checkov and pip-install the pinned checkov into it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall from scratch")
    args = parser.parse_args()
    if not args.force and installed_version() == VERSION:
        print(f"checkov {VERSION} already in {TARGET.relative_to(ROOT)}")
        return 0
    if TARGET.exists():
        shutil.rmtree(TARGET)
    venv.EnvBuilder(with_pip=True).create(TARGET)
    subprocess.run(
        [str(TARGET / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", f"checkov=={VERSION}"],
        check=True, timeout=900,
    )
    found = installed_version()
    if found != VERSION:
        print(f"checkov reports {found!r}, expected {VERSION}", file=sys.stderr)
        return 1
    print(f"installed checkov {VERSION} into {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
