"""Where artifacts live in a store: store keys for manifests, artifacts, per-function indexes."""

from __future__ import annotations

import hashlib
import types

PREFIX = "cc1"


def manifest_key(key: str) -> str:
    return f"{PREFIX}/m/{key}"


def artifact_key(key: str) -> str:
    return f"{PREFIX}/a/{key}"


def function_id(fn: types.FunctionType) -> str:
    """A stable id of a function across processes: module, qualified name, file."""
    name = f"{fn.__module__}:{fn.__qualname__}:{fn.__code__.co_filename}"
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def index_key(fn_id: str) -> str:
    return f"{PREFIX}/i/{fn_id}"


def lock_name(key: str) -> str:
    return f"{PREFIX}-lock-{key}"
