"""Configuration: read once, from the environment, into an explicit object.

Nothing is read at import time. ``Config.from_env()`` reads the variables below when called;
``Config(...)`` builds one by hand; :func:`current_config` is the process's own, read once.
Every invalid value raises :class:`ConfigError` naming the variable and saying what would be
valid.

=======================  ==========================================  =============================
variable                 meaning                                     default
=======================  ==========================================  =============================
COMPILECACHE_DIR         directory of the local disk store           $XDG_CACHE_HOME/compilecache,
                                                                     else ~/.cache/compilecache
COMPILECACHE_MAX_SIZE    bound of the disk store: bytes, or with a   10GiB
                         unit (K, M, G, T; KB/KiB alike, powers of
                         1024)
COMPILECACHE_REMOTE      redis:// (or rediss://, unix://) URL of     unset: no remote tier
                         the shared tier
COMPILECACHE_SECRET      HMAC secret (at least 16 bytes) to sign     unset: entries unsigned
                         and verify entries
COMPILECACHE_SECRET_     the secret before a rotation: verifies,     unset
PREVIOUS                 never signs
COMPILECACHE_REMOTE_     1/true/yes/on: use an unsigned remote       off: without a secret, the
UNSIGNED                 tier (everyone who can write it is trusted) remote tier is skipped
COMPILECACHE_REMOTE_     1/true/yes/on: read the remote tier, never  off
READ_ONLY                write it (CI on untrusted branches, fleets)
COMPILECACHE_LOCK_TTL    seconds a compile lock lives unrenewed      600
                         (its holder renews it while compiling)
COMPILECACHE_LOCK_       seconds a process waits for another's       300
TIMEOUT                  compile before compiling itself
COMPILECACHE_DISABLE     1/true/yes/on turns caching off             off
COMPILECACHE_SALT        any text, mixed into every cache key        unset
COMPILECACHE_CONFIG      path of a TOML configuration file           $XDG_CONFIG_HOME/compilecache/
                                                                     config.toml, else
                                                                     ~/.config/compilecache/
                                                                     config.toml (if it exists)
=======================  ==========================================  =============================

The file holds the same settings in lower case without the prefix (``dir``, ``max_size``,
``remote``, ``remote_unsigned``, ``remote_read_only``, ``secret``, ``secret_previous``,
``lock_ttl``, ``lock_timeout``, ``disable``, ``salt``), at the top level or in a
``[compilecache]`` table. A variable overrides the file; ``Config.sources`` says where each
value came from (``default``, ``environment`` or ``file <path>``).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ConfigError

DEFAULT_MAX_SIZE = 10 << 30

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGT])(?:I?B)?|B)?\s*", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_REMOTE_SCHEMES = ("redis://", "rediss://", "unix://")


def parse_seconds(text: str, setting: str) -> float:
    """Parse a positive number of seconds (``"600"``, ``"2.5"``)."""
    try:
        seconds = float(text.strip())
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"{setting}={text!r} is not a positive number of seconds (e.g. 600 or 2.5)",
            setting=setting,
        )
    return seconds


def parse_size(text: str, setting: str = "size") -> int:
    """Parse ``"10GiB"``, ``"512M"``, ``"1.5G"`` or ``"1048576"`` into bytes.

    >>> parse_size("2KiB"), parse_size("1.5M")
    (2048, 1572864)
    """
    match = _SIZE.fullmatch(text)
    if not match:
        raise ConfigError(
            f"{setting}={text!r} is not a size: write bytes or a number with a unit "
            "K, M, G or T (for example 10GiB or 512M)",
            setting=setting,
        )
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if size <= 0:
        raise ConfigError(f"{setting}={text!r} must be greater than zero", setting=setting)
    return size


def parse_bool(text: str, setting: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{setting}={text!r} is not a boolean: use 1/true/yes/on or 0/false/no/off",
        setting=setting,
    )


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/compilecache``, else ``~/.cache/compilecache`` (a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG specification says)."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "compilecache"
    return Path(environ.get("HOME") or "~").expanduser() / ".cache" / "compilecache"


_SECRET_QUERY = re.compile(r"([?&][^=&#]*pass[^=&#]*=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs, errors and reports: the
    password of the user information (cut by text, not parsed: a password may hold ``/``,
    ``?`` or ``#``) and any query value whose name holds "pass" (``?password=``).

    >>> redact_url("redis://app:hunter2@cache:6379/0"), redact_url("redis://:p/w@cache/1")
    ('redis://app:***@cache:6379/0', 'redis://:***@cache/1')
    >>> redact_url("unix:///run/redis.sock?db=0&password=hunter2")
    'unix:///run/redis.sock?db=0&password=***'
    """
    text = _SECRET_QUERY.sub(r"\1***", url)
    scheme, separator, rest = text.partition("://")
    at = rest.rfind("@")
    if not separator or at < 0 or ":" not in rest[:at]:
        return text
    name = rest[:at].split(":", 1)[0]
    return f"{scheme}://{name}:***@{rest[at + 1 :]}"


@dataclass(frozen=True)
class Config:
    """The effective configuration; ``sources`` says where each value came from."""

    dir: Path
    max_size: int = DEFAULT_MAX_SIZE
    remote: str | None = None
    secret: bytes | None = field(default=None, repr=False)
    disable: bool = False
    salt: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    remote_unsigned: bool = False
    remote_read_only: bool = False
    lock_ttl: float = 600.0
    lock_timeout: float = 300.0
    secret_previous: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.remote is not None and not self.remote.lower().startswith(_REMOTE_SCHEMES):
            raise ConfigError(
                f"COMPILECACHE_REMOTE={redact_url(self.remote)!r} is not a Redis URL: "
                "use redis://host:port/db, rediss://... or unix:///path.sock",
                setting="COMPILECACHE_REMOTE",
            )
        for setting, secret in (
            ("COMPILECACHE_SECRET", self.secret),
            ("COMPILECACHE_SECRET_PREVIOUS", self.secret_previous),
        ):
            if secret is not None and len(secret) < 16:
                raise ConfigError(
                    f"{setting} is shorter than 16 bytes: use a long random value, "
                    "for example: python -c 'import secrets; print(secrets.token_hex(32))'",
                    setting=setting,
                )
        if self.secret_previous is not None and self.secret is None:
            raise ConfigError(
                "COMPILECACHE_SECRET_PREVIOUS is set without COMPILECACHE_SECRET: the previous "
                "secret only verifies; set the new secret as COMPILECACHE_SECRET",
                setting="COMPILECACHE_SECRET_PREVIOUS",
            )
        for setting, seconds in (
            ("COMPILECACHE_LOCK_TTL", self.lock_ttl),
            ("COMPILECACHE_LOCK_TIMEOUT", self.lock_timeout),
        ):
            if not seconds > 0:
                raise ConfigError(
                    f"{setting} must be a positive number of seconds", setting=setting
                )
        if self.max_size <= 0:
            raise ConfigError(
                "COMPILECACHE_MAX_SIZE must be positive", setting="COMPILECACHE_MAX_SIZE"
            )

    def __repr__(self) -> str:
        remote = None if self.remote is None else redact_url(self.remote)
        return (
            f"Config(dir={self.dir!r}, max_size={self.max_size}, remote={remote!r}, "
            f"remote_unsigned={self.remote_unsigned}, "
            f"remote_read_only={self.remote_read_only}, lock_ttl={self.lock_ttl}, "
            f"lock_timeout={self.lock_timeout}, secret={'<set>' if self.secret else None}, "
            f"disable={self.disable}, salt={self.salt!r})"
        )

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """The secrets that verify, the signing one first (empty: unsigned)."""
        return tuple(s for s in (self.secret, self.secret_previous) if s is not None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the ``COMPILECACHE_*`` variables from ``environ`` (default ``os.environ``),
        and the configuration file for settings the variables leave unset."""
        env = os.environ if environ is None else environ
        sources: dict[str, str] = {}
        path = config_file(env)
        in_file = read_config_file(path) if path is not None else {}

        def read(name: str) -> str | None:
            value = env.get(name)
            if value is not None:
                sources[name] = "environment"
                return value
            if name in in_file:
                sources[name] = f"file {path}"
                return in_file[name]
            sources[name] = "default"
            return None

        raw_dir = read("COMPILECACHE_DIR")
        raw_size = read("COMPILECACHE_MAX_SIZE")
        raw_remote = read("COMPILECACHE_REMOTE")
        raw_unsigned = read("COMPILECACHE_REMOTE_UNSIGNED")
        raw_read_only = read("COMPILECACHE_REMOTE_READ_ONLY")
        raw_ttl = read("COMPILECACHE_LOCK_TTL")
        raw_timeout = read("COMPILECACHE_LOCK_TIMEOUT")
        raw_secret = read("COMPILECACHE_SECRET")
        raw_previous = read("COMPILECACHE_SECRET_PREVIOUS")
        raw_disable = read("COMPILECACHE_DISABLE")
        raw_salt = read("COMPILECACHE_SALT")
        for setting, raw in (
            ("COMPILECACHE_SECRET", raw_secret),
            ("COMPILECACHE_SECRET_PREVIOUS", raw_previous),
        ):
            if raw is not None and not raw:
                raise ConfigError(
                    f"{setting} is set but empty: entries would silently go unsigned; "
                    "unset it to run unsigned, or set a long random value",
                    setting=setting,
                )
        if raw_dir is not None and not raw_dir.strip():
            raise ConfigError(
                "COMPILECACHE_DIR is set but empty: unset it or name a directory",
                setting="COMPILECACHE_DIR",
            )
        return cls(
            dir=Path(raw_dir).expanduser() if raw_dir else default_cache_dir(env),
            max_size=DEFAULT_MAX_SIZE
            if raw_size is None
            else parse_size(raw_size, "COMPILECACHE_MAX_SIZE"),
            remote=raw_remote.strip() or None if raw_remote is not None else None,
            remote_unsigned=parse_bool(raw_unsigned or "", "COMPILECACHE_REMOTE_UNSIGNED"),
            remote_read_only=parse_bool(raw_read_only or "", "COMPILECACHE_REMOTE_READ_ONLY"),
            lock_ttl=600.0 if raw_ttl is None else parse_seconds(raw_ttl, "COMPILECACHE_LOCK_TTL"),
            lock_timeout=300.0
            if raw_timeout is None
            else parse_seconds(raw_timeout, "COMPILECACHE_LOCK_TIMEOUT"),
            secret=raw_secret.encode("utf-8") if raw_secret else None,
            secret_previous=raw_previous.encode("utf-8") if raw_previous else None,
            disable=parse_bool(raw_disable or "", "COMPILECACHE_DISABLE"),
            salt=raw_salt or None,
            sources=sources,
        )


_FILE_SETTINGS = (
    "dir",
    "max_size",
    "remote",
    "remote_unsigned",
    "remote_read_only",
    "lock_ttl",
    "lock_timeout",
    "secret",
    "secret_previous",
    "disable",
    "salt",
)


def config_file(environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: ``COMPILECACHE_CONFIG`` (which must exist), else the
    per-user file if it exists, else None."""
    explicit = environ.get("COMPILECACHE_CONFIG")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"COMPILECACHE_CONFIG={explicit!r} is not a file: create it or unset the variable",
                setting="COMPILECACHE_CONFIG",
            )
        return path
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        base = Path(xdg)
    elif environ.get("HOME"):
        base = Path(environ["HOME"]) / ".config"
    else:
        return None
    candidate = base / "compilecache" / "config.toml"
    return candidate if candidate.is_file() else None


def read_config_file(path: Path) -> dict[str, str]:
    """The settings of a TOML configuration file, as ``{"COMPILECACHE_X": text}``.

    Raises :class:`ConfigError` naming the file for bad TOML, unknown settings or values that
    are not strings, numbers or booleans.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    setting = "COMPILECACHE_CONFIG"
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}", setting=setting) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}", setting=setting) from None
    table = data.pop("compilecache", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [compilecache] must be a table", setting=setting)
    twice = sorted(set(table) & set(data))
    if twice:
        raise ConfigError(
            f"{path}: {', '.join(twice)} set both at the top level and in [compilecache]: keep one",
            setting=setting,
        )
    settings: dict[str, str] = {}
    for name, value in {**data, **table}.items():
        if name not in _FILE_SETTINGS:
            raise ConfigError(
                f"{path}: unknown setting {name!r}; known settings: {', '.join(_FILE_SETTINGS)}",
                setting=setting,
            )
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise ConfigError(
                f"{path}: {name} must be a string, number or boolean, not {type(value).__name__}",
                setting=setting,
            )
        settings[f"COMPILECACHE_{name.upper()}"] = text
    return settings


_current_lock = threading.Lock()
_current: Config | None = None


def current_config() -> Config:
    """This process's configuration: ``Config.from_env()`` read on first call, then kept (see
    :mod:`compilecache._runtime`, which also makes the store and hooks from it)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Config.from_env()
        return _current


def set_current_config(config: Config | None) -> None:
    """Make ``config`` this process's configuration (None: read it again on next use)."""
    global _current
    with _current_lock:
        _current = config
