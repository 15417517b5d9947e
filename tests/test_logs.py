"""COMPILECACHE_LOGS: channels on demand, nothing but warnings that matter by default."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from compilecache._logs import CHANNELS, LogSpecError, parse

SCRIPT = textwrap.dedent(
    """
    import compilecache
    @compilecache.jit
    def f(x):
        return x + 1
    for i in range(3):
        f(i * 1.5)
    """
)


def run(logs: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPILECACHE_")}
    env["COMPILECACHE_DISABLE"] = "1"
    if logs is not None:
        env["COMPILECACHE_LOGS"] = logs
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return done.stderr


def test_parse_levels_and_all() -> None:
    import logging

    assert parse("recompiles,+keys,-store") == {
        "compilecache.recompiles": logging.INFO,
        "compilecache.keys": logging.DEBUG,
        "compilecache.store": logging.ERROR,
    }
    assert set(parse("+all")) == set(CHANNELS.values())
    with pytest.raises(LogSpecError, match=r"unknown channel 'dynamo'.*recompiles"):
        parse("dynamo")


def test_silent_by_default_and_channels_on_demand() -> None:
    assert run(None) == ""
    shown = run("recompiles")
    assert "[compilecache.recompiles] INFO: recompiling f" in shown
    assert "0/0: x: expected 0.0, got 1.5" in shown
    assert "compilecache.dispatch" not in shown and "compilecache.keys" not in shown


def test_a_bad_spec_warns_and_imports() -> None:
    assert "unknown channel 'nope'" in run("nope")


LOGS_SCRIPT = textwrap.dedent(
    """
    import logging
    logging.getLogger().setLevel(logging.DEBUG)  # the application's root level
    import compilecache
    @compilecache.jit
    def f(x):
        return x + 1
    for i in range(3):
        f(i * 1.5)
    """
)


def test_one_channel_does_not_turn_on_every_channel_at_the_roots_level() -> None:
    """set_logs installs its handler on the "compilecache" logger without giving that logger a
    level, so channels not named inherit the root logger's level: with an application at
    DEBUG, COMPILECACHE_LOGS=recompiles also prints every other channel's DEBUG records."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPILECACHE_")}
    env.update(COMPILECACHE_DISABLE="1", COMPILECACHE_LOGS="recompiles")
    done = subprocess.run(
        [sys.executable, "-c", LOGS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "[compilecache.recompiles]" in done.stderr
    others = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("[compilecache.") and not line.startswith("[compilecache.recompiles]")
    ]
    assert others == [], others
