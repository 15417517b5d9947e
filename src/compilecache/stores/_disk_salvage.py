"""Recovery from a damaged disk-store index: the payload files are re-adopted.

When SQLite finds the index file damaged, the index sets it aside and starts a new one (a cache
may forget, never lie: see ``_disk_index``). What it held is not all lost: every value kept in
a payload file carries its key in its frame's tag (``_disk_files.file_tag``), so the store
adopts each file whose frame names its key and checks out. What could not be adopted (values
kept inside the index, files without their key) is lost: logged once at WARNING, counted as
``corrupt``, and appended to a record that ``compilecache verify`` reports (exit status 4)
and then moves to quarantine/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from .._errors import CorruptEntryError, InvalidKeyError
from . import _disk_files as files
from ._disk_index import Index, transaction
from ._keys import check_key
from ._stats import Counters

logger = logging.getLogger("compilecache.store.disk")

#: Appended to by each recovery from a damaged index (JSON lines); read by verify.
DAMAGE_RECORD = "index-damaged.jsonl"

_INSERT_IF_ABSENT = (
    "INSERT OR IGNORE INTO entries (key, value, filename, size, created, accessed) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def salvage(
    root: Path,
    store_tag: bytes,
    index: Index,
    *,
    recovered: dict[str, Any],
    counters: Counters,
    record: Path,
) -> None:
    """After the index of the store in ``root`` (frames tagged ``store_tag``) was found
    damaged and set aside (``recovered`` says what it held): adopt every payload file whose
    frame names its key and checks out into ``index``, log at WARNING what was lost, count it
    in ``counters`` and append it to ``record``."""
    adopted = unreadable = 0
    rows = []
    for relative, mtime in files.iter_payload_files(root):
        tag = files.read_file_tag(root, relative)
        key = None if tag is None else files.key_of_tag(tag, store_tag)
        try:
            if key is None:
                raise CorruptEntryError("its frame does not name its key")
            check_key(key)
            tags = (files.file_tag(store_tag, key), store_tag)
            files.read_payload_file(str(root), relative, tags)
            size = (root / relative).stat().st_size
        except (CorruptEntryError, InvalidKeyError, OSError):
            unreadable += 1
            continue
        rows.append((key, None, relative, size, mtime, mtime))
    with transaction(conn := index.connection()):
        for row in rows:
            adopted += conn.execute(_INSERT_IF_ABSENT, row).rowcount
    held, inline = recovered.get("entries"), recovered.get("inline")
    lost = None if held is None else max(0, held - adopted)
    entry = {
        "at": time.time(),
        "aside": recovered.get("aside"),
        "error": recovered.get("error"),
        "entries before": held,
        "inline before": inline,
        "adopted": adopted,
        "files not adopted": unreadable,
        "lost": lost,
    }
    counters.add("corrupt", lost if lost is not None else 1)
    with open(record, "a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")
    logger.warning(
        "disk store index %s was damaged (%s): set aside as %s; %d entries re-adopted "
        "from their payload files, %s lost (values kept inside the index, and files "
        "without their key); `compilecache verify` reports it",
        index.path,
        recovered.get("error"),
        recovered.get("aside"),
        adopted,
        "an unknown number of entries" if lost is None else f"{lost} entries",
    )


def read_damage_records(record: Path) -> list[dict[str, Any]]:
    """What each recovery recorded in ``record`` found (lines that do not parse are left out)."""
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found
