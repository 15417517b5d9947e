"""What compilecache knows about transformers and diffusers, registered without importing them.

- **Keys.** Their configuration objects are keyed as data (their class, by the library's
  version, and their state), leaving out the fields that cannot change compiled code and would
  split caches between machines: where a checkpoint was loaded from (``_name_or_path``, and
  the model's own ``name_or_path``), its
  commit hash, the library version that wrote the file, and bookkeeping such as
  ``GenerationConfig._original_object_hash`` (a hash that differs between processes). The
  instance state is read, not ``to_dict()``: ``PretrainedConfig.to_dict()`` drops
  ``_attn_implementation_internal``, which selects the attention kernel the model runs.
- **Cache classes** (``DynamicCache``, ``EncoderDecoderCache``, ``StaticCache``, ...) as inputs
  and outputs of AOT packages: registered with torch's pytree (through transformers' own export
  helpers) and with the dispatch layer's guards (a cache is guarded by its type and its state:
  its layers' tensors, their shapes, dtypes and devices). Done by :func:`activate` once
  transformers is imported, which ``compilecache.torch.compile`` calls.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from ..keys._objects import StateReader, register_state_reader

logger = logging.getLogger("compilecache.torch")

_CONFIG_LOCAL = frozenset({"_name_or_path", "_commit_hash", "transformers_version"})
_GENERATION_LOCAL = frozenset(
    {"_commit_hash", "transformers_version", "_original_object_hash", "_from_model_config"}
)
_DIFFUSERS_LOCAL = frozenset({"_name_or_path", "_diffusers_version", "_use_default_values"})


def _items(value: Any) -> dict[str, Any]:
    return dict(value.items())


def register_key_readers() -> None:
    """Key readers for the libraries' configuration types (by name: nothing is imported)."""
    for name in (
        "transformers.configuration_utils:PreTrainedConfig",
        "transformers.configuration_utils:PretrainedConfig",  # transformers 4
    ):
        register_state_reader(name, StateReader(excluded=_CONFIG_LOCAL))
    register_state_reader(
        "transformers.generation.configuration_utils:GenerationConfig",
        StateReader(excluded=_GENERATION_LOCAL),
    )
    # A model remembers where it was loaded from.
    register_state_reader(
        "transformers.modeling_utils:PreTrainedModel",
        StateReader(excluded=frozenset({"name_or_path"})),
    )
    # A FrozenDict mirrors its items as attributes; the items are its state.
    register_state_reader(
        "diffusers.configuration_utils:FrozenDict",
        StateReader(excluded=_DIFFUSERS_LOCAL, read=_items),
    )


_activated: set[str] = set()
_lock = threading.Lock()


_registered: set[type] = set()


def activate() -> None:
    """Register what the libraries in use need (imports nothing they did not). Called by
    every ``compile()``: cache classes defined since (a model's module imported later) are
    registered then. A failure is logged once and never raised: the model still compiles,
    and calls with a cache fall back with the reason."""
    if "transformers" not in sys.modules:
        return
    with _lock:
        try:
            _activate_transformers()
        except Exception as error:
            if "transformers" not in _activated:
                logger.warning(
                    "compilecache cannot register transformers' cache classes (%r): calls "
                    "that pass or return a cache fall back to torch.compile",
                    error,
                )
        _activated.add("transformers")


def _activate_transformers() -> None:
    from transformers import cache_utils

    from ..dispatch import register_state_type

    if "transformers" not in _activated:
        for name in ("Cache", "CacheLayerMixin", "EncoderDecoderCache"):
            kind = getattr(cache_utils, name, None)
            if isinstance(kind, type):
                register_state_type(kind)
    register_cache_pytrees(cache_utils)


def register_cache_pytrees(cache_utils: Any) -> None:
    """Register transformers' cache classes with torch's pytree (a process-global registry:
    torch's own ``tree_map`` then treats caches as containers too), so that torch.export
    traces them as inputs and outputs: with transformers' generic registration where it has
    one (every ``Cache`` subclass not registered yet), else its ``DynamicCache`` support."""
    register: Any = None
    try:
        from transformers.exporters import exporter_dynamo

        register = getattr(exporter_dynamo, "register_pytree_node", None)
    except ImportError:  # transformers before 5.2x: no generic registration
        pass
    if register is not None:
        for kind in _subclasses(cache_utils.Cache):  # every Cache subclass, not Cache itself
            if kind not in _registered:
                register(kind)
                _registered.add(kind)
        return
    if "transformers" not in _activated:
        from transformers.integrations import executorch

        support: Any = executorch.register_dynamic_cache_export_support
        support()


def _subclasses(kind: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in kind.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found
