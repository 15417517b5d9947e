"""A persistable test backend that works across processes, without pickle.

``compile`` returns a :class:`Compiled` naming the function by module and qualified name;
``dumps`` writes that name as JSON, ``loads`` imports it back. Each compile appends a line to
``log`` (a file), so tests in several processes can count compiles; ``delay`` makes a compile
slow enough for processes to collide.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from typing import Any


class Compiled:
    def __init__(self, fn: Any, origin: str) -> None:
        self.fn = fn
        self.origin = origin

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self.origin, self.fn(*args, **kwargs))


class FileLoggedBackend:
    name = "file-logged"
    version = "1"

    def __init__(self, log: str, delay: float = 0.0) -> None:
        self.log = log
        self.delay = delay

    def __call__(self, fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        with open(self.log, "a") as file:
            file.write(f"{os.getpid()} compiled {fn.__qualname__}\n")
        if self.delay:
            time.sleep(self.delay)
        return Compiled(fn, "compiled")

    def dumps(self, compiled: Compiled) -> bytes:
        return json.dumps(
            {"module": compiled.fn.__module__, "name": compiled.fn.__qualname__}
        ).encode()

    def loads(self, data: bytes) -> Compiled:
        named = json.loads(data)
        fn: Any = importlib.import_module(named["module"])
        for part in named["name"].split("."):
            fn = getattr(fn, part)
        return Compiled(getattr(fn, "__wrapped__", fn), "loaded")


def compiles(log: str) -> int:
    try:
        with open(log) as file:
            return sum(1 for line in file if " compiled " in line)
    except FileNotFoundError:
        return 0
