"""Trust (docs/trust.md): nothing is loaded from a tier that others can write unless it is
signed. Real processes, a real redis-server (with requirepass, and with TLS), real directories
with real owners and modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from artifactbackend import compiles
from clihelpers import MODULE, POPULATE, TESTS, clean_env, fake_entry
from compilecache import Config, ConfigError
from compilecache._config import redact_url
from compilecache._errors import UntrustedDirectoryError
from compilecache.artifacts import export_bundle, import_bundle
from compilecache.artifacts._bundle import BundleError
from compilecache.cli._main import EXIT_BACKEND, main
from compilecache.stores import DiskStore, open_store, skipped_tiers
from redisserver import RedisServer, free_port, redis_server_or_skip

OLD = "old-secret-" + "a" * 21
NEW = "new-secret-" + "b" * 21
PASSWORD = "hunter2-" + "p" * 12
UNSIGNED_WARNING = "its values are not signed"


def run_jit(work: Path, cache: Path, **env: str) -> str:
    """Two jit functions called for two sizes in a fresh process configured by ``env`` (its
    cache directory ``cache``); returns what it printed on stderr."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "clipkg.py").write_text(textwrap.dedent(MODULE.format(offset=1)))
    script = POPULATE.format(
        tests=str(TESTS), workdir=str(work), log=str(work.parent / "log"), sizes=(4, 5)
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(cache, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def log_of(tmp_path: Path) -> str:
    return str(tmp_path / "log")


def remote_keys(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.dbsize())
    finally:
        client.close()


# -- an unsigned remote -------------------------------------------------------------------
@pytest.mark.redis
def test_an_unsigned_remote_is_neither_read_nor_written_without_the_opt_in(
    tmp_path: Path, redis_url: str
) -> None:
    first = run_jit(tmp_path / "w", tmp_path / "a", COMPILECACHE_REMOTE=redis_url)
    assert compiles(log_of(tmp_path)) == 4  # two functions, two sizes
    assert remote_keys(redis_url) == 0, "an untrusted remote was written"
    # One warning per process, however many calls, with both fixes.
    assert first.count(UNSIGNED_WARNING) == 1, first
    assert "COMPILECACHE_SECRET" in first and "COMPILECACHE_REMOTE_UNSIGNED=1" in first
    # Local caching goes on: the same directory loads.
    run_jit(tmp_path / "w", tmp_path / "a", COMPILECACHE_REMOTE=redis_url)
    assert compiles(log_of(tmp_path)) == 4
    # Another machine (an empty directory) compiles itself, even though Redis was pre-filled
    # by a trusted writer: the untrusted remote is not read either.
    run_jit(
        tmp_path / "w",
        tmp_path / "writer",
        COMPILECACHE_REMOTE=redis_url,
        COMPILECACHE_REMOTE_UNSIGNED="1",
    )
    assert remote_keys(redis_url) > 0
    before = compiles(log_of(tmp_path))
    run_jit(tmp_path / "w", tmp_path / "b", COMPILECACHE_REMOTE=redis_url)
    assert compiles(log_of(tmp_path)) == before + 4


@pytest.mark.redis
def test_with_the_opt_in_an_unsigned_remote_is_shared(tmp_path: Path, redis_url: str) -> None:
    shared = {"COMPILECACHE_REMOTE": redis_url, "COMPILECACHE_REMOTE_UNSIGNED": "1"}
    first = run_jit(tmp_path / "w", tmp_path / "a", **shared)
    second = run_jit(tmp_path / "w", tmp_path / "b", **shared)
    assert compiles(log_of(tmp_path)) == 4  # the second machine loaded everything
    assert UNSIGNED_WARNING not in first + second


@pytest.mark.redis
def test_a_signed_remote_is_shared_and_the_cli_says_which_applies(
    tmp_path: Path, redis_url: str
) -> None:
    shared = {"COMPILECACHE_REMOTE": redis_url, "COMPILECACHE_SECRET": NEW}
    run_jit(tmp_path / "w", tmp_path / "a", **shared)
    run_jit(tmp_path / "w", tmp_path / "b", **shared)
    assert compiles(log_of(tmp_path)) == 4
    signed = cli_json(tmp_path / "b", "config", **shared)["trust"]
    assert [d["trusted"] for d in signed] == [True, True]
    assert "signed" in signed[1]["why"]
    unsigned = cli_json(tmp_path / "b", "stats", COMPILECACHE_REMOTE=redis_url)["trust"]
    assert unsigned[1]["trusted"] is False and UNSIGNED_WARNING in unsigned[1]["why"]
    opted = cli_json(
        tmp_path / "b", "config", COMPILECACHE_REMOTE=redis_url, COMPILECACHE_REMOTE_UNSIGNED="1"
    )
    assert opted["trust"][1]["trusted"] is True
    assert opted["settings"]["COMPILECACHE_REMOTE_UNSIGNED"]["value"] is True


def cli(cache: Path, *args: str, **env: str) -> Any:
    settings = ("REMOTE", "REMOTE_UNSIGNED", "SECRET", "SECRET_PREVIOUS", "CONFIG", "LOGS")
    environment: dict[str, str | None] = {f"COMPILECACHE_{name}": None for name in settings}
    environment.update(COMPILECACHE_DIR=str(cache), **env)
    return CliRunner().invoke(main, list(args), env=environment)


def cli_json(cache: Path, *args: str, **env: str) -> Any:
    result = cli(cache, *args, "--json", **env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the local directory ------------------------------------------------------------------
def entries_of(cache: Path) -> list[str]:
    return sorted(DiskStore(cache, private=False).keys())


def test_a_group_writable_cache_directory_is_never_loaded_from(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_jit(tmp_path / "w", cache)
    assert compiles(log_of(tmp_path)) == 4
    stored = entries_of(cache)
    cache.chmod(0o770)
    printed = run_jit(tmp_path / "w", cache)
    assert compiles(log_of(tmp_path)) == 8, "entries were loaded from a group-writable directory"
    assert entries_of(cache) == stored, "an untrusted directory was written"
    assert printed.count("can write it") == 1, printed
    assert str(cache) in printed and "mode 0770" in printed and "chmod -R go-w" in printed
    assert "owner root" in printed or "owner uid" in printed
    with pytest.raises(UntrustedDirectoryError, match="its group can write it"):
        DiskStore(cache)
    # A planted file directly under a private directory is found too.
    cache.chmod(0o700)
    run_jit(tmp_path / "w", cache)
    assert compiles(log_of(tmp_path)) == 8  # trusted again: loads
    (cache / "data").mkdir(exist_ok=True)
    (cache / "data").chmod(0o777)
    with pytest.raises(UntrustedDirectoryError, match="its group and others can write it"):
        DiskStore(cache)


@pytest.fixture
def other_user() -> Iterator[int]:
    """The uid of a user other than the current one, which root can give files to."""
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root (CI runs as root)")
    import pwd

    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 65534  # chown accepts a uid without a name
    yield uid


def test_a_cache_directory_owned_by_another_user_is_never_loaded_from(
    tmp_path: Path, other_user: int
) -> None:
    cache = tmp_path / "cache"
    run_jit(tmp_path / "w", cache)
    os.chown(cache, other_user, -1)
    printed = run_jit(tmp_path / "w", cache)
    assert compiles(log_of(tmp_path)) == 8
    assert f"uid {other_user}" in printed and "someone other than you" in printed, printed
    os.chown(cache, os.geteuid(), -1)
    DiskStore(cache).close()  # yours again
    # A file inside that another user owns (the index, which holds small values inline).
    os.chown(cache / "index-v1.sqlite3", other_user, -1)
    planted = r"index-v1\.sqlite3 \(owner .*\) is owned by someone other"
    with pytest.raises(UntrustedDirectoryError, match=planted):
        DiskStore(cache)
    report = cli_json(cache, "stats")
    assert report["trust"][0]["trusted"] is False
    assert report["since"] is None  # the counters in an untrusted directory are not read
    zero = cli(cache, "stats", "--zero")
    assert zero.exit_code != 0 and "nothing zeroed" in zero.output
    page = cli(cache, "report", "--html", str(cache.parent / "r.html"))
    assert page.exit_code != 0 and "no report" in page.output


def test_a_planted_payload_file_is_not_loaded(tmp_path: Path, other_user: int) -> None:
    store = DiskStore(tmp_path / "cache")
    store.put("big", b"x" * (64 * 1024))  # in a payload file under data/
    (payload,) = list((tmp_path / "cache" / "data").rglob("*.val"))
    os.chown(payload, other_user, -1)
    assert store.get("big") is None
    assert store.stats().corrupt == 1


def test_a_cache_under_a_directory_others_can_rename_in_is_not_trusted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UntrustedDirectoryError, match="above the cache, has mode 0777"):
        DiskStore(shared / "cache")
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot rename what they do not own
    DiskStore(shared / "cache").close()


def test_new_store_directories_are_private_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        store = DiskStore(tmp_path / "parent" / "cache")
        store.put("big", b"x" * (64 * 1024))  # a payload file in data/xx/yy/
        store.close()
    finally:
        os.umask(old)
    root = tmp_path / "parent" / "cache"
    directories = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert len(directories) >= 4
    assert {stat.S_IMODE(p.stat().st_mode) for p in directories} == {0o700}
    DiskStore(root).close()  # and the next process trusts it


def test_a_configured_directory_that_is_a_link_to_your_own_is_trusted(tmp_path: Path) -> None:
    real = tmp_path / "real"
    DiskStore(real).close()
    link = tmp_path / "link"
    link.symlink_to(real)
    DiskStore(link).close()
    (real / "planted").symlink_to(tmp_path)
    with pytest.raises(UntrustedDirectoryError, match="symbolic link inside"):
        DiskStore(link)


def test_an_untrusted_directory_never_fails_the_program(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    store = open_store(Config(dir=cache))
    store.put("k", b"v")  # skipped, not raised
    assert store.get("k") is None
    assert any(d.tier == "local" and str(cache) == d.location for d in skipped_tiers())
    assert list(cache.iterdir()) == []


# -- secret rotation ----------------------------------------------------------------------
def test_entries_signed_with_the_previous_secret_load_and_new_writes_use_the_new_one(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    before = open_store(Config(dir=cache, secret=OLD.encode()))
    before.put("old-entry", b"signed with the old secret")
    rotating = open_store(Config(dir=cache, secret=NEW.encode(), secret_previous=OLD.encode()))
    assert rotating.get("old-entry") == b"signed with the old secret"
    rotating.put("new-entry", b"signed with the new secret")
    assert open_store(Config(dir=cache, secret=NEW.encode())).get("new-entry") is not None
    assert before.get("new-entry") is None, "the new entry was signed with the old secret"
    # Under neither secret: refused and counted.
    foreign = "foreign-secret-" + "c" * 17
    open_store(Config(dir=cache, secret=foreign.encode())).put("foreign", b"x")
    assert rotating.get("foreign") is None
    assert rotating.stats().rejected == 1


def test_a_bundle_signed_with_the_previous_secret_imports(tmp_path: Path) -> None:
    source = DiskStore(tmp_path / "source")
    digest, values = fake_entry(1, b"artifact")
    source.put_many(values)
    bundle = tmp_path / "b.ccbundle"
    export_bundle(bundle, store=source, secret=OLD)
    target = DiskStore(tmp_path / "target")
    with pytest.raises(BundleError, match="does not verify"):
        import_bundle(bundle, store=target, secret=NEW)
    report = import_bundle(bundle, store=target, secret=NEW, previous_secret=OLD)
    assert report.imported == [digest]


def test_rotation_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET_PREVIOUS is set without"):
        Config.from_env({"COMPILECACHE_SECRET_PREVIOUS": OLD})
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET_PREVIOUS is shorter"):
        Config.from_env({"COMPILECACHE_SECRET": NEW, "COMPILECACHE_SECRET_PREVIOUS": "short"})
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET_PREVIOUS is set but empty"):
        Config.from_env({"COMPILECACHE_SECRET": NEW, "COMPILECACHE_SECRET_PREVIOUS": ""})
    with pytest.raises(ConfigError, match="COMPILECACHE_REMOTE_UNSIGNED='maybe'"):
        Config.from_env({"COMPILECACHE_REMOTE_UNSIGNED": "maybe"})


def test_the_configuration_file_holds_the_trust_settings(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text(f'remote = "redis://h/0"\nremote_unsigned = true\nsecret_previous = "{OLD}"\n')
    with pytest.raises(ConfigError, match="without COMPILECACHE_SECRET"):
        Config.from_env({"COMPILECACHE_CONFIG": str(file)})
    config = Config.from_env({"COMPILECACHE_CONFIG": str(file), "COMPILECACHE_SECRET": NEW})
    assert config.remote_unsigned and config.secret_previous == OLD.encode()
    assert config.sources["COMPILECACHE_REMOTE_UNSIGNED"] == f"file {file}"


# -- Redis with a password, and TLS -------------------------------------------------------
def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url(f"redis://app:{PASSWORD}@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redact_url(f"rediss://:{PASSWORD}@cache/1?ssl_ca_certs=/x") == (
        "rediss://:***@cache/1?ssl_ca_certs=/x"
    )
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    # Passwords with URL delimiters, and passwords in the query.
    assert redact_url("redis://app:s3cr/t?x#y@cache/0") == "redis://app:***@cache/0"
    assert (
        redact_url("unix:///run/r.sock?password=pw&db=1") == "unix:///run/r.sock?password=***&db=1"
    )
    with pytest.raises(ConfigError) as bad:
        from compilecache.stores import RedisStore

        RedisStore("redis://app:s3cr/t@cache:port/0")
    assert "s3cr" not in str(bad.value)
    store = open_store(Config(dir=Path("/nonexistent/x"), remote="redis://app:s3cr/t@h:p/0"))
    assert store.get("k") is None  # neither tier usable: skipped, not raised
    assert PASSWORD not in repr(Config(dir=Path("/x"), remote=f"redis://:{PASSWORD}@h/0"))
    with pytest.raises(ConfigError) as error:
        Config(dir=Path("/x"), remote=f"http://:{PASSWORD}@h/0")
    assert PASSWORD not in str(error.value)


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip(options={"requirepass": PASSWORD})
    try:
        yield server
    finally:
        server.close()


@pytest.mark.redis
def test_redis_with_requirepass_shares_with_the_right_password(
    tmp_path: Path, password_server: RedisServer
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{password_server.port}/0"
    shared = {"COMPILECACHE_REMOTE": url, "COMPILECACHE_SECRET": NEW}
    run_jit(tmp_path / "w", tmp_path / "a", **shared)
    run_jit(tmp_path / "w", tmp_path / "b", **shared)
    assert compiles(log_of(tmp_path)) == 4
    shown = cli(tmp_path / "b", "config", **shared).output
    assert PASSWORD not in shown and "redis://:***@127.0.0.1" in shown


@pytest.mark.redis
def test_a_wrong_password_is_one_clear_error_without_the_password(
    tmp_path: Path, password_server: RedisServer
) -> None:
    wrong = "wrong-password-" + "w" * 10
    url = f"redis://:{wrong}@127.0.0.1:{password_server.port}/0"
    printed = run_jit(
        tmp_path / "w", tmp_path / "a", COMPILECACHE_REMOTE=url, COMPILECACHE_SECRET=NEW
    )
    assert compiles(log_of(tmp_path)) == 4  # the program went on, compiling
    assert printed.count("refused the credentials") == 1, printed
    assert wrong not in printed and f"redis://:***@127.0.0.1:{password_server.port}/0" in printed
    result = cli(tmp_path / "a", "stats", COMPILECACHE_REMOTE=url, COMPILECACHE_SECRET=NEW)
    assert result.exit_code == EXIT_BACKEND
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0], result.output
    assert wrong not in result.output


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, int, Path]]:
    certs = tmp_path_factory.mktemp("certs")
    make_certificates(certs)
    tls_port = free_port()
    server = redis_server_or_skip(
        options={
            "tls-port": str(tls_port),
            "tls-cert-file": str(certs / "server.pem"),
            "tls-key-file": str(certs / "server.key"),
            "tls-ca-cert-file": str(certs / "ca.pem"),
            "tls-auth-clients": "no",
        }
    )
    try:
        yield server, tls_port, certs / "ca.pem"
    finally:
        server.close()


def make_certificates(directory: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 signed by it (openssl)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=compilecache test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )


@pytest.mark.redis
def test_rediss_with_a_certificate_authority_shares(
    tmp_path: Path, tls_server: tuple[RedisServer, int, Path]
) -> None:
    _, port, ca = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    shared = {"COMPILECACHE_REMOTE": url, "COMPILECACHE_SECRET": NEW}
    run_jit(tmp_path / "w", tmp_path / "a", **shared)
    run_jit(tmp_path / "w", tmp_path / "b", **shared)
    assert compiles(log_of(tmp_path)) == 4
    # Without the authority, the server's certificate does not verify: one warning, compiles.
    unverified = f"rediss://127.0.0.1:{port}/0"
    printed = run_jit(
        tmp_path / "w", tmp_path / "c", COMPILECACHE_REMOTE=unverified, COMPILECACHE_SECRET=NEW
    )
    assert compiles(log_of(tmp_path)) == 8
    assert "CERTIFICATE_VERIFY_FAILED" in printed


def test_explain_says_which_tier_was_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilecache
    from artifactbackend import FileLoggedBackend

    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o775)
    monkeypatch.setenv("COMPILECACHE_DIR", str(cache))
    for name in ("REMOTE", "SECRET", "SECRET_PREVIOUS", "CONFIG"):
        monkeypatch.delenv(f"COMPILECACHE_{name}", raising=False)
    compilecache.default_hooks.reset()
    try:
        double = compilecache.jit(lambda x: x * 2, backend=FileLoggedBackend(log_of(tmp_path)))
        assert double(3) == ("compiled", 6)
        report = str(compilecache.explain(double, 3))
        assert f"not read: the local tier {cache}: skipped" in report, report
        assert "mode 0775" in report
    finally:
        compilecache.default_hooks.reset()
        compilecache.reset()
