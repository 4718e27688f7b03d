"""Files written atomically: a new temporary file beside the target, renamed over it once complete."""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from pathlib import Path

# O_BINARY (Windows only): a text handle's newline="" must reach the file untranslated, CRLF of CSVs included.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


def create_beside(path: Path) -> tuple[int, Path]:
    """A new, unique file beside `path`, opened for writing: (descriptor, its path).

    O_EXCL with a random name is what tempfile does, but with open()'s mode 0666: the kernel applies
    the umask (and a directory's default ACL) as for any new file, where tempfile's 0600 would hide
    the results from a group or a service user (Neo4j reading import CSVs). Reading the umask instead
    would mean setting it, which races with other threads.
    """
    for _ in range(tempfile.TMP_MAX):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, _CREATE_FLAGS, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))
