"""Whether a cache directory is the current user's alone: nothing is loaded from one that
others can write (docs/trust.md).

A directory is private when it, every entry directly under it, and every entry directly under
its ``data/`` directory is owned by the effective user and writable by neither group nor
others. Deeper files are not each checked: nobody else can have created them while the
directories above them were private. Where the platform has no POSIX owners (Windows), every
directory counts as private.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o700
_CHECKED_SUBDIRECTORY = "data"


def make_private_directory(path: Path, inside: Path | None = None) -> None:
    """Create ``path`` if needed, each directory created here (missing parents too, below
    ``inside`` when given) with mode 0700, so that a umask of 002 does not leave writable
    directories on the way. An existing directory is left as it is: :func:`directory_problem`
    judges it."""
    if path.is_dir():
        return
    missing = [level for level in [path, *path.parents] if not level.is_dir()]
    for level in reversed(missing):
        if inside is not None and inside not in level.parents and level != inside:
            continue
        try:
            level.mkdir(mode=PRIVATE_MODE)
        except FileExistsError:
            pass


def directory_problem(path: Path) -> str | None:
    """Why ``path`` is not private, in words, or None if it is. ``path`` should be resolved
    (no symbolic links), as :class:`DiskStore` resolves its root once: a link checked here
    could be pointed elsewhere afterwards."""
    if not hasattr(os, "geteuid"):
        return None
    user = os.geteuid()
    if not path.is_dir():
        return f"{path} is not a directory"
    problem = _entry_problem(path, user, follow=True)
    if problem is not None:
        return problem
    for above in path.parents:
        problem = _ancestor_problem(above, user)
        if problem is not None:
            return problem
    for parent in (path, path / _CHECKED_SUBDIRECTORY):
        try:
            children = list(os.scandir(parent))
        except FileNotFoundError:
            continue
        except OSError as error:
            return f"{parent} cannot be listed ({error.strerror})"
        for child in children:
            problem = _entry_problem(Path(child.path), user, follow=False)
            if problem is not None:
                return problem
    return None


def untrusted_directory_message(directory: Path, problem: str) -> str:
    return (
        f"{problem}; another user could plant code there, so nothing is loaded from it. Fix: "
        f"chmod -R go-w {str(directory)!r} (and chown it to yourself) if you know what it "
        "holds, else move it aside or remove it (anything in it may have been planted while "
        "others could write it; compilecache makes a new one, mode 0700), or set "
        "COMPILECACHE_DIR to a directory of your own. A directory above the cache must be "
        "yours or root's, and not writable by everyone unless sticky (as /tmp is)"
    )


def _ancestor_problem(path: Path, user: int) -> str | None:
    """A directory above the cache: whoever can rename entries in it can swap the cache."""
    try:
        info = os.stat(path)
    except OSError as error:
        return f"{path} cannot be read ({error.strerror})"
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (user, 0):
        return f"{path}, above the cache, is owned by {_user_name(info.st_uid)}"
    # Writable by its group is allowed above the cache (a user-private group, umask 002);
    # writable by everyone only with the sticky bit (as /tmp is).
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return f"{path}, above the cache, has mode {mode:04o}: others can rename what it holds"
    return None


def _entry_problem(path: Path, user: int, *, follow: bool) -> str | None:
    # The directory the configuration names may be a symbolic link, so it is followed; a link
    # inside the store is itself a planted entry.
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"{path} cannot be read ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link inside the cache directory"
    mode = stat.S_IMODE(info.st_mode)
    owner = f"owner {_user_name(info.st_uid)}, mode {mode:04o}"
    if info.st_uid != user:
        return f"{path} ({owner}) is owned by someone other than you ({_user_name(user)})"
    writers = [
        who for bit, who in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others")) if mode & bit
    ]
    if writers:
        return f"{path} ({owner}): {' and '.join(writers)} can write it"
    return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
