"""``compilecache demo``: the demo transformer, eager against torch.compile against
compilecache, cold and warm, each in a fresh process; a table of times and speedups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any

import click


def _run_case(case: str, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "compilecache.torch._demo_cases", case]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise click.ClickException(f"the {case} case failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def plan(remote: str | None) -> list[tuple[str, str, str, bool]]:
    """(label, case, Inductor cache directory name, whether the local store starts empty) in
    running order. A directory name used twice is warm the second time."""
    rows = [
        ("eager", "eager", "inductor-eager", False),
        ("torch.compile, cold", "torch.compile", "inductor-torch-compile", False),
        ("torch.compile, warm", "torch.compile", "inductor-torch-compile", False),
        ("compilecache, cold", "compilecache", "inductor-cold", False),
        ("compilecache, warm", "compilecache", "inductor-warm", False),
    ]
    if remote:
        rows.append(("compilecache, warm from remote", "compilecache", "inductor-remote", True))
    return rows


@click.command()
@click.option("--remote", default=None, help="Also warm-start from this remote tier (redis://...).")
@click.option(
    "--dir", "directory", default=None, help="The local store (default: the configured one)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def demo(remote: str | None, directory: str | None, as_json: bool) -> None:
    """Compile the demo transformer every way and compare first-call times.

    Every case runs in a fresh process. Cold cases start from empty caches; the compilecache
    cases use the local store (and the remote tier with --remote) under a salt unique to this
    run, so that the cold case is really cold; each run adds one package (about 2 MB) to the
    store, which its size bound evicts in time.
    """
    from rich.console import Console
    from rich.table import Table

    try:
        import torch  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "the demo needs torch: pip install 'compilecache[torch]'"
        ) from None
    from .._runtime import runtime

    console = Console(stderr=as_json, width=max(100, shutil.get_terminal_size().columns))
    config = runtime().config
    local = directory or str(config.dir)
    salt = f"demo-{uuid.uuid4().hex[:12]}"
    demo_secret = uuid.uuid4().hex
    scratch = tempfile.mkdtemp(prefix="compilecache-demo-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    base.pop("COMPILECACHE_REMOTE", None)
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        for label, case, inductor, empty_local in plan(remote):
            env = dict(
                base,
                COMPILECACHE_SALT=salt,
                COMPILECACHE_DIR=os.path.join(scratch, "empty-local") if empty_local else local,
                TORCHINDUCTOR_CACHE_DIR=os.path.join(scratch, inductor),
            )
            if remote and case == "compilecache":
                env["COMPILECACHE_REMOTE"] = remote
                # An unsigned remote is not read (docs/trust.md): without a configured
                # secret, the demo signs its own entries (keyed under its own salt) with one
                # made for this run.
                env.setdefault("COMPILECACHE_SECRET", demo_secret)
            with console.status(f"[bold]{label}[/bold]: running in a fresh process..."):
                report = _run_case(case, env)
            console.print(f"  {label}: first output after {report['first_call_seconds']:.3f} s")
            results.append((label, report))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(dict(results), indent=2))
        return
    reference = dict(results)["torch.compile, warm"]["first_call_seconds"]
    table = Table(title="The demo transformer (d=128, 4 heads, 2 blocks, input 2x16x128), CPU")
    for column in (
        "case",
        "first output (s)",
        "vs torch.compile warm",
        "per call (us)",
        "max |diff|",
    ):
        table.add_column(column, justify="left" if column == "case" else "right")
    for label, report in results:
        first = report["first_call_seconds"]
        table.add_row(
            label,
            f"{first:.3f}",
            f"{reference / first:.1f}x faster"
            if first < reference
            else f"{first / reference:.1f}x slower",
            f"{report['steady_call_seconds'] * 1e6:.0f}",
            f"{report['max_error']:.1e}",
        )
    console.print(table)
    warm = dict(results).get("compilecache, warm")
    if warm is not None and warm.get("stats", {}).get("aot loads") == 1:
        console.print(
            "compilecache's warm start loaded the AOT package from the store: no export, no "
            f"compiler, torch._inductor imported: {warm['inductor_imported']}."
        )
