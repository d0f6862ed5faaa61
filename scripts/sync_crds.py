"""Copy the generated CRD (manifests/crd/) into the chart's crds/ folder, byte for byte.

The CRD exists once: `modelplane crd` generates manifests/crd/ from the spec model, and this
script makes the chart ship the very same file. tests/integration/ship fails on drift.

    python scripts/sync_crds.py          # copy
    python scripts/sync_crds.py --check  # exit 1 when the chart's copy differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "manifests" / "crd"
TARGET = ROOT / "charts" / "modelplane" / "crds"


def stale() -> list[str]:
    """Names of CRD files missing, different, or extra in the chart."""
    wanted = {p.name: p.read_bytes() for p in sorted(SOURCE.glob("*.yaml"))}
    have = {p.name: p.read_bytes() for p in sorted(TARGET.glob("*.yaml"))}
    return sorted(n for n in wanted.keys() | have.keys() if wanted.get(n) != have.get(n))


def main() -> int:
    """Copy manifests/crd/*.yaml to the chart, or with --check report drift."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the chart's CRDs differ")
    args = parser.parse_args()
    sources = sorted(SOURCE.glob("*.yaml"))
    if not sources:
        print(f"no CRD in {SOURCE.relative_to(ROOT)}: run `modelplane crd` first")
        return 1
    drift = stale()
    if args.check:
        for name in drift:
            print(f"charts/modelplane/crds/{name} differs from manifests/crd: run "
                  "python scripts/sync_crds.py")
        return 1 if drift else 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for extra in set(p.name for p in TARGET.glob("*.yaml")) - {p.name for p in sources}:
        (TARGET / extra).unlink()
    for source in sources:
        (TARGET / source.name).write_bytes(source.read_bytes())
    print(f"synced {len(sources)} CRD file(s) into {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
