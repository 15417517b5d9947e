"""Persistent compiled artifacts: keys, manifests, stores, compile once. See docs/artifacts.md.

The heavy parts (stores, key fingerprinting) are imported on first use of their names, so that
``import compilecache`` stays cheap.

The pipeline of a miss (``_persistence.ArtifactHooks``) is made of named parts, one module
each: key derivation, single flight, publication (admission), the function index, telemetry;
their state for one miss is a ``RequestState`` on the request. Around it: manifests, the stored
guard format, bundles, verify, the inventory the command line lists and prunes, explain. A
backend's own artifact format (what ``dumps`` returns, such as the torch layer's ``aot``,
``aot-train`` and ``jit`` entries in ``compilecache/torch/_artifact.py``) is opaque here: this
layer stores bytes with a manifest and never looks inside.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._default import ConfiguredHooks as ConfiguredHooks

if TYPE_CHECKING:
    from ._bundle import BundleError as BundleError
    from ._bundle import BundleReport as BundleReport
    from ._bundle import export_bundle as export_bundle
    from ._bundle import import_bundle as import_bundle
    from ._explain import Explanation as Explanation
    from ._explain import explain as explain
    from ._persistence import Admission as Admission
    from ._persistence import ArtifactHooks as ArtifactHooks
    from ._persistence import ArtifactStats as ArtifactStats
    from ._persistence import persistable as persistable

_LAZY = dict.fromkeys(
    ("Admission", "ArtifactHooks", "ArtifactStats", "persistable"), "._persistence"
)
_LAZY.update(dict.fromkeys(("explain", "Explanation"), "._explain"))
_LAZY.update(
    dict.fromkeys(("export_bundle", "import_bundle", "BundleError", "BundleReport"), "._bundle")
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Admission",
    "ArtifactHooks",
    "ArtifactStats",
    "BundleError",
    "BundleReport",
    "ConfiguredHooks",
    "Explanation",
    "explain",
    "export_bundle",
    "import_bundle",
    "persistable",
]
