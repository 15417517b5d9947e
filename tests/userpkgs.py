"""User packages written per test (modules named ``rv_*``) and imported afresh: the
``workdir`` fixture (in conftest.py) puts a test's directory on ``sys.path`` and forgets its
modules afterwards; :func:`load` writes sources there and imports one."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any


def load(workdir: Path, main: str, files: dict[str, str]) -> Any:
    """Write ``files`` (relative path -> source) and import ``main`` afresh."""
    for relative, source in files.items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source))
    for name in list(sys.modules):
        if name.startswith("rv_"):
            sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(main)
