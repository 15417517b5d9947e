"""Keys for data-like objects: keyed by class and state, refused with the path that reached
them when their state cannot be read, library readers leave local fields out."""

from __future__ import annotations

import collections
import dataclasses
import os
import subprocess
import sys
import threading
import types
from typing import Any, NamedTuple

import pytest

from compilecache.keys import Unfingerprintable
from compilecache.keys._deps import DependencyWalker
from compilecache.keys._objects import StateReader, is_data_like, register_state_reader


def digest(value: Any) -> bytes:
    return DependencyWalker().encode(value, "value")


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Pair(NamedTuple):
    a: int
    b: str


class Settings:
    def __init__(self, scale: float, names: Any = ("a",), inner: Any = None) -> None:
        self.scale = scale
        self.names = names
        self.inner = inner


class Slotted:
    __slots__ = ("depth", "width")

    def __init__(self, depth: int, width: int) -> None:
        self.depth = depth
        self.width = width


class OtherSettings(Settings):
    pass


class Holder:
    def __init__(self, thing: Any) -> None:
        self.thing = thing


@pytest.mark.parametrize(
    ("make", "changed"),
    [
        (lambda: Point(1.0, 2.0), lambda: Point(1.0, 2.5)),
        (lambda: Pair(1, "x"), lambda: Pair(1, "y")),
        (lambda: Settings(2.0), lambda: Settings(3.0)),
        (lambda: Settings(2.0, inner=Point(1.0)), lambda: Settings(2.0, inner=Point(2.0))),
        (lambda: Slotted(2, 3), lambda: Slotted(2, 4)),
        (lambda: types.SimpleNamespace(a=1), lambda: types.SimpleNamespace(a=2)),
        (lambda: collections.OrderedDict(a=1, b=2), lambda: collections.OrderedDict(b=2, a=1)),
        (lambda: Settings(2.0), lambda: OtherSettings(2.0)),
    ],
    ids=["dataclass", "namedtuple", "plain", "nested", "slots", "namespace", "ordered", "class"],
)
def test_equal_state_gives_one_key_and_other_state_another(make: Any, changed: Any) -> None:
    assert digest(make()) == digest(make()), "two objects with the same state"
    assert digest(make()) != digest(changed()), "another state or class"


def test_objects_whose_state_python_cannot_read_are_refused_with_their_path() -> None:
    for opaque in (threading.Lock(), threading.Event(), open(os.devnull)):  # noqa: SIM115
        with pytest.raises(Unfingerprintable) as raised:
            digest(Holder(Settings(1.0, inner=opaque)))
        assert raised.value.reason.startswith("value.thing.inner"), raised.value.reason
        assert raised.value.where is not None and raised.value.where.startswith("value.thing")
    assert not is_data_like(threading.Lock())
    assert not is_data_like(__import__("random").Random(0))  # its state lives in C


def test_cycles_and_shared_objects_are_keyed() -> None:
    a = Settings(1.0)
    a.inner = a  # a cycle
    shared = Point(1.0)
    assert digest(a) == digest(a)
    assert digest(Settings(1.0, inner=[shared, shared])) == digest(
        Settings(1.0, inner=[Point(1.0), Point(1.0)])
    )


def test_a_reader_leaves_local_fields_out() -> None:
    class Config:
        def __init__(self, hidden: int, path: str) -> None:
            self.hidden = hidden
            self.path = path

    register_state_reader(
        f"{Config.__module__}:{Config.__qualname__}", StateReader(excluded=frozenset({"path"}))
    )
    assert digest(Config(8, "/home/a/ckpt")) == digest(Config(8, "/mnt/b/ckpt"))
    assert digest(Config(8, "/home/a/ckpt")) != digest(Config(16, "/home/a/ckpt"))


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_keys_objects import Settings, Point, digest
print(digest(Settings(2.0, names={{"b", "a", "c"}}, inner={{"k": Point(1.0), "j": 2}})).hex())
"""


def test_object_keys_are_identical_across_processes_and_hash_seeds() -> None:
    script = SCRIPT.format(tests=os.path.dirname(__file__))
    found = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        found.add(out.stdout.strip())
    assert len(found) == 1, found
