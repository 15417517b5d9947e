"""The manifest stored beside each artifact: what it is, what it was compiled for, how to check
it. JSON only; read back strictly (a manifest that does not parse or does not match its key is
a miss, never trusted in part)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from .._errors import CacheError
from ..keys import FORMAT_VERSION, CacheKey

_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "function": str,
    "backend": str,
    "components": dict,
    "guards": list,
    "spec": list,
    "compile_seconds": (int, float),
    "artifact_size": int,
    "artifact_sha256": str,
    "created": (int, float),
}


class ManifestError(CacheError):
    """A stored manifest that cannot be used (wrong format, key, or artifact digest)."""


@dataclass(frozen=True)
class Manifest:
    key: str
    function: str
    backend: str
    components: dict[str, Any]
    guards: list[dict[str, Any]]
    spec: list[str]
    compile_seconds: float
    artifact_size: int
    artifact_sha256: str
    created: float

    def to_bytes(self) -> bytes:
        data = {"format": FORMAT_VERSION, **self.__dict__}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def build(
        cls,
        key: CacheKey,
        *,
        function: str,
        backend: str,
        guards: list[dict[str, Any]],
        spec: list[str],
        compile_seconds: float,
        artifact: bytes,
    ) -> Manifest:
        return cls(
            key=key.digest,
            function=function,
            backend=backend,
            components=key.as_json(),
            guards=guards,
            spec=spec,
            compile_seconds=compile_seconds,
            artifact_size=len(artifact),
            artifact_sha256=hashlib.sha256(artifact).hexdigest(),
            created=time.time(),
        )

    @classmethod
    def from_bytes(cls, data: bytes, expected_key: str) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.pop("format") != FORMAT_VERSION:
                raise ManifestError("manifest of another format version")
            manifest = cls(**raw)
        except ManifestError:
            raise
        except Exception as error:
            raise ManifestError(f"manifest does not parse: {error!r}") from None
        if manifest.key != expected_key:
            raise ManifestError("manifest stored under another key")
        wrong = [
            name
            for name, kinds in _FIELD_TYPES.items()
            if not isinstance(getattr(manifest, name), kinds)
            or isinstance(getattr(manifest, name), bool)  # a JSON true is not a number
        ]
        if wrong or not all(isinstance(c, dict) for c in manifest.components.values()):
            raise ManifestError(f"manifest fields have the wrong types: {', '.join(wrong)}")
        if not all(isinstance(line, str) for line in manifest.spec):
            raise ManifestError("manifest spec is not a list of text lines")
        return manifest

    def check_artifact(self, artifact: bytes) -> None:
        if len(artifact) != self.artifact_size:
            raise ManifestError(
                f"artifact is {len(artifact)} bytes, the manifest says {self.artifact_size}"
            )
        if hashlib.sha256(artifact).hexdigest() != self.artifact_sha256:
            raise ManifestError("artifact digest does not match its manifest")
