"""Configuration from the environment and the store it builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compilecache import Config, ConfigError
from compilecache.stores import CodecStore, DiskStore, NullStore, TieredStore, open_store


def test_defaults_follow_xdg_then_home(tmp_path: Path) -> None:
    config = Config.from_env({"XDG_CACHE_HOME": str(tmp_path)})
    assert config.dir == tmp_path / "compilecache"
    assert config.max_size == 10 << 30
    assert (config.remote, config.secret, config.disable) == (None, None, False)
    assert Config.from_env({"HOME": "/home/u"}).dir == Path("/home/u/.cache/compilecache")
    assert config.sources["COMPILECACHE_DIR"] == "default"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("2K", 2048),
        ("2KiB", 2048),
        ("1.5M", 1572864),
        ("10GiB", 10 << 30),
        ("1 tb", 1 << 40),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert Config.from_env({"COMPILECACHE_MAX_SIZE": text, "HOME": "/h"}).max_size == size


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("COMPILECACHE_MAX_SIZE", "ten gigs", "not a size"),
        ("COMPILECACHE_MAX_SIZE", "0", "greater than zero"),
        ("COMPILECACHE_MAX_SIZE", "-5G", "not a size"),
        ("COMPILECACHE_REMOTE", "http://cache:6379", "not a Redis URL"),
        ("COMPILECACHE_SECRET", "tooshort", "shorter than 16 bytes"),
        ("COMPILECACHE_DISABLE", "maybe", "not a boolean"),
        ("COMPILECACHE_DIR", "  ", "empty"),
        ("COMPILECACHE_LOCK_TTL", "ten", "positive number of seconds"),
        ("COMPILECACHE_LOCK_TTL", "0", "positive number of seconds"),
        ("COMPILECACHE_LOCK_TIMEOUT", "-1", "positive number of seconds"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({name: value, "HOME": "/h"})
    assert name in str(info.value) and fragment in str(info.value)
    assert info.value.setting == name
    assert isinstance(info.value, ValueError)


def test_secret_is_not_shown_in_repr() -> None:
    config = Config.from_env({"COMPILECACHE_SECRET": "x" * 40, "HOME": "/h"})
    assert config.secret == b"x" * 40 and "x" * 40 not in repr(config)
    assert config.sources["COMPILECACHE_SECRET"] == "environment"


def test_config_empty_secret_is_an_error_not_silently_unsigned() -> None:
    """COMPILECACHE_SECRET='' (e.g. from an unset CI secret) silently turns signing off, while
    an empty COMPILECACHE_DIR is an error. A security setting should fail loudly."""
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET"):
        Config.from_env({"COMPILECACHE_SECRET": "", "HOME": "/h"})


def test_config_size_without_unit_rejects_a_stray_ib_suffix() -> None:
    """'10iB' parses as 10 bytes: the (?:I?B)? suffix is allowed without a unit letter."""
    with pytest.raises(ConfigError):
        Config.from_env({"COMPILECACHE_MAX_SIZE": "10iB", "HOME": "/h"})


def test_open_store_composes_what_is_configured(tmp_path: Path) -> None:
    base = {"COMPILECACHE_DIR": str(tmp_path)}
    assert isinstance(open_store(Config.from_env(base)), DiskStore)
    assert isinstance(open_store(Config.from_env({**base, "COMPILECACHE_DISABLE": "1"})), NullStore)
    signed = open_store(Config.from_env({**base, "COMPILECACHE_SECRET": "y" * 32}))
    assert isinstance(signed, CodecStore) and isinstance(signed.inner, DiskStore)
    signed.put("k", b"v")
    assert signed.get("k") == b"v"
    remote = {"COMPILECACHE_REMOTE": "redis://127.0.0.1:1/0", "COMPILECACHE_REMOTE_UNSIGNED": "1"}
    tiered = open_store(Config.from_env({**base, **remote}))
    assert isinstance(tiered, TieredStore)
    assert [tier.name for tier in tiered.tiers] == ["disk", "redis"]
    tiered.close()


def test_disabled_store_holds_nothing() -> None:
    store = NullStore()
    store.put("k", b"v")
    assert store.insert("k", b"v") is False
    assert store.get("k") is None and list(store) == []
    assert store.stats().write_skips == 2


def test_environment_is_read_when_asked_not_at_import(tmp_path: Path) -> None:
    code = (
        "import os, compilecache, compilecache.stores\n"
        "os.environ['COMPILECACHE_MAX_SIZE'] = '3M'\n"
        "print(compilecache.Config.from_env().max_size)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"COMPILECACHE_MAX_SIZE": "not a size", "HOME": str(tmp_path), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(3 << 20)


def test_import_pulls_in_neither_torch_nor_redis() -> None:
    code = (
        "import sys, compilecache, compilecache.stores\n"
        "from compilecache.stores import DiskStore, TieredStore, MemoryStore\n"
        "print(sorted(m for m in ('torch', 'redis', 'zstandard') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the configuration file ---------------------------------------------------------------
def test_config_file_fills_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[compilecache]\ndir = "/srv/cache"\nmax_size = "2G"\ndisable = false\nsalt = "v2"\n'
    )
    config = Config.from_env({"COMPILECACHE_CONFIG": str(path), "COMPILECACHE_SALT": "env"})
    assert config.dir == Path("/srv/cache")
    assert config.max_size == 2 << 30
    assert config.salt == "env"
    assert config.sources["COMPILECACHE_DIR"] == f"file {path}"
    assert config.sources["COMPILECACHE_SALT"] == "environment"
    assert config.sources["COMPILECACHE_REMOTE"] == "default"


def test_per_user_config_file_is_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "compilecache").mkdir(parents=True)
    (home / ".config" / "compilecache" / "config.toml").write_text('remote = "redis://h:1/0"\n')
    assert Config.from_env({"HOME": str(home)}).remote == "redis://h:1/0"
    assert Config.from_env({"HOME": str(tmp_path / "nobody")}).remote is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dir = [1, 2]\n", "dir must be a string"),
        ("colour = 'red'\n", "unknown setting 'colour'"),
        ("dir = \n", "not valid TOML"),
        ("max_size = 'lots'\n", "not a size"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"COMPILECACHE_CONFIG": str(path)})


def test_a_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        Config.from_env({"COMPILECACHE_CONFIG": str(tmp_path / "absent.toml")})


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """read_config_file catches OSError and TOMLDecodeError but not the UnicodeDecodeError
    that tomllib raises for bytes that are not UTF-8, so the error is not a ConfigError and
    does not name the file."""
    from compilecache._config import Config
    from compilecache._errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_bytes(b'salt = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"config\.toml"):
        Config.from_env({"COMPILECACHE_CONFIG": str(path), "COMPILECACHE_DIR": str(tmp_path)})


def test_top_level_settings_beside_a_compilecache_table_are_not_dropped(tmp_path: Path) -> None:
    """read_config_file reads only the [compilecache] table when there is one, so settings at
    the top level of the same file (both places are documented) are silently ignored, unknown
    ones included: here the salt, which then leaves every key unsalted."""
    from compilecache._config import Config
    from compilecache._errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('salt = "release-7"\n\n[compilecache]\nmax_size = "1G"\n')
    try:
        config = Config.from_env(
            {"COMPILECACHE_CONFIG": str(path), "COMPILECACHE_DIR": str(tmp_path)}
        )
    except ConfigError:
        return  # rejecting the mix is fine too
    assert config.max_size == 1 << 30
    assert config.salt == "release-7", config.sources


def test_lock_ttl_and_timeout_are_settings(tmp_path: Path) -> None:
    config = Config.from_env({"COMPILECACHE_LOCK_TTL": "2.5", "HOME": str(tmp_path)})
    assert (config.lock_ttl, config.lock_timeout) == (2.5, 300.0)
    path = tmp_path / "config.toml"
    path.write_text("lock_timeout = 30\n")
    config = Config.from_env({"COMPILECACHE_CONFIG": str(path), "HOME": str(tmp_path)})
    assert config.lock_timeout == 30.0 and config.sources["COMPILECACHE_LOCK_TIMEOUT"].startswith(
        "file"
    )


def test_the_configuration_is_read_once_into_one_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One runtime context per process: jit's default hooks and the torch layer's share one
    store made from one reading of the environment (the torch layer's hooks take the lock
    settings too); reconfigure() reads it again."""
    import compilecache
    from compilecache._runtime import runtime
    from compilecache.torch._hooks import default_hooks

    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "first"))
    monkeypatch.setenv("COMPILECACHE_LOCK_TTL", "7")
    monkeypatch.setenv("COMPILECACHE_LOCK_TIMEOUT", "3")
    generic, torch_hooks = compilecache.default_hooks.hooks(), default_hooks()
    assert generic is not torch_hooks and generic.store is torch_hooks.store
    assert torch_hooks.single_flight.timeout == 3.0
    lock = torch_hooks.single_flight.lock_factory("probe")
    assert lock.ttl == 7.0
    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "second"))
    assert runtime().config.dir == tmp_path / "first"  # read once
    assert compilecache.default_hooks.hooks() is generic
    compilecache.reconfigure()
    assert runtime().config.dir == tmp_path / "second"
    assert default_hooks().store is not torch_hooks.store
    monkeypatch.setenv("COMPILECACHE_DISABLE", "1")
    compilecache.reconfigure()
    assert type(default_hooks()).__name__ == "NoHooks"
