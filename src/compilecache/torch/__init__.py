"""compilecache for PyTorch: compiled models that warm-start in milliseconds.

``compilecache.torch.compile(model)`` compiles inference calls ahead of time (torch.export and
AOTInductor into a package, loaded by torch's C++ loader with the live weights bound) and
other calls with torch.compile (its cache artifacts carried by compilecache's stores), each
specialization keyed by the model's structure and persisted. See docs/torch.md.

Importing this module imports torch (``import compilecache`` does not).

Where things go: a new kind of torch artifact (an execution strategy, like ``aot``,
``aot-train`` and ``jit``) is a header ``mode`` in ``_artifact.py``, a runner module that loads
and calls it (``_aot_runner``, ``_train_runner``, ``_jit_runner``), and its branch in
``_backend.py``'s ``dumps``/``loads``; routing a call to a strategy is ``_routing.py``; model
libraries' conventions (transformers, diffusers) are ``_model_libraries.py`` and
``_generation.py``. This package talks to the store only through the artifact layer's hooks
(and reads the stores layer's record of skipped tiers, for its stats).
"""

from __future__ import annotations

import torch as _torch

from ..keys._fingerprints import register_fingerprint as _register_fingerprint
from ._aot_runner import StaleWeights as StaleWeights
from ._backend import AOTUnavailableError as AOTUnavailableError
from ._backend import TorchBackend as TorchBackend
from ._fingerprint import ModelKey as _ModelKey
from ._fingerprint import model_key_fingerprint as _model_key_fingerprint
from ._fingerprint import module_fingerprint as _module_fingerprint
from ._hooks import reset_default_hooks as reset_default_hooks
from ._model_libraries import register_key_readers as _register_key_readers
from ._module import CompiledModule as CompiledModule
from ._module import compile as compile
from ._module import explain as explain
from ._module import restore as restore
from ._module import stats as stats

_register_fingerprint(_torch.nn.Module, _module_fingerprint)
_register_fingerprint(_ModelKey, _model_key_fingerprint)
_register_key_readers()

__all__ = [
    "AOTUnavailableError",
    "CompiledModule",
    "StaleWeights",
    "TorchBackend",
    "compile",
    "explain",
    "reset_default_hooks",
    "restore",
    "stats",
]
