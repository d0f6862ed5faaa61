"""Where the benchmarks' load generators are: ``.tools/bin`` first, as the tests look."""

from __future__ import annotations

import shutil
from pathlib import Path

TOOLS_BIN = Path(__file__).resolve().parents[1] / ".tools" / "bin"


def tool_binary(name: str) -> str | None:
    """``name`` from .tools/bin (``make tools`` puts Debian's wrk and h2load there), else
    from PATH, else None."""
    installed = TOOLS_BIN / name
    return str(installed) if installed.is_file() else shutil.which(name)
