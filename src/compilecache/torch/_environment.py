"""What a compiled torch artifact depends on besides the model: torch and the machine.

Packages hold machine code, so their key names the CPU's instruction-set level torch dispatches
to and the C++ compiler that built them. The compiler is identified by its resolved path, size
and modification time (a stat, not a subprocess: this is on every warm start's path).
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import Any

import torch


@functools.lru_cache(maxsize=1)
def torch_identity() -> dict[str, str]:
    git = getattr(torch.version, "git_version", None) or "unknown"
    return {"torch": str(torch.__version__), "git": str(git)}


@functools.lru_cache(maxsize=1)
def cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch: no such query
        return "unknown"


@functools.lru_cache(maxsize=4)
def compiler_identity(name: str | None = None) -> str:
    """``path size mtime`` of the C++ compiler Inductor would run (``$CXX``, else ``g++``)."""
    name = name or os.environ.get("CXX") or "g++"
    found = shutil.which(name)
    if found is None:
        return f"{name} (not found)"
    real = os.path.realpath(found)
    info = os.stat(real)
    return f"{real} {info.st_size} {int(info.st_mtime)}"


@functools.lru_cache(maxsize=1)
def cpu_features() -> str:
    """The CPU's model and a digest of its feature flags. AOTInductor compiles with
    ``-march=native``: a package may use any instruction this very CPU has, so a package built
    on one CPU model is not reused on another, even of the same capability level."""
    import hashlib

    model, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "model name" and model == "unknown":
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model != "unknown" and flags:
                    break
    except OSError:  # not Linux: the capability level and the platform have to do
        pass
    return f"{model} flags:{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def machine_options(mode: str) -> dict[str, Any]:
    """The machine facts a key of ``mode`` depends on (AOT packages hold machine code; JIT
    artifacts hold torch's own caches, which key the machine themselves)."""
    facts: dict[str, Any] = {"cpu": cpu_capability()}
    if mode == "aot":
        facts["cpu features"] = cpu_features()
        facts["cxx"] = compiler_identity()
    return facts
