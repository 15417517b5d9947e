"""The exception tree: everything compilecache raises on purpose is a CacheError."""

from __future__ import annotations

import pytest

from compilecache import CacheError, CacheUsageError
from compilecache._logs import LogSpecError
from compilecache.artifacts._guard_format import GuardFormatError
from compilecache.artifacts._manifest import ManifestError
from compilecache.keys import Unfingerprintable


@pytest.mark.parametrize("kind", [Unfingerprintable, ManifestError, GuardFormatError])
def test_internal_signals_are_cache_errors(kind: type) -> None:
    assert issubclass(kind, CacheError)
    assert str(kind("what was wrong")) == "what was wrong"


def test_a_bad_log_spec_is_a_usage_error_and_still_a_value_error() -> None:
    assert issubclass(LogSpecError, CacheUsageError) and issubclass(LogSpecError, ValueError)


def test_torch_errors_are_cache_errors() -> None:
    from torchhelpers import require_torch

    require_torch()  # (under CI a missing torch fails)
    from compilecache.torch import StaleWeights
    from compilecache.torch._artifact import TorchArtifactError

    assert issubclass(StaleWeights, CacheError)
    assert issubclass(TorchArtifactError, CacheError) and issubclass(TorchArtifactError, ValueError)
