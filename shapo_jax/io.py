"""Durable files: whole files replaced atomically, records appended and fsynced.

Nothing a run writes may be lost or left half written: a result file is written to a
temporary file in the same directory and renamed over the old one (a reader sees the old
file or the new one, never a mix), and a log is appended in whole records, flushed and
fsynced, so an interrupted run loses at most the record being written (readers skip a torn
last line). Every writer of the project goes through these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def _replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` that is renamed over `path` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file, fsync and a rename."""
    path = Path(path)
    with _replacing(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """`data` as indented JSON with sorted keys, written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_save(path: str | os.PathLike, save: Callable[[Path], Any]) -> Path:
    """`save(tmp)` writes the file (e.g. `figure.savefig`); it then replaces `path` whole.

    The temporary name keeps `path`'s suffix, so writers that pick a format from the file
    name (matplotlib, NumPy) write the right one.
    """
    path = Path(path)
    with _replacing(path, suffix=path.suffix) as tmp:
        save(tmp)
    return path


def append_durably(path: str | os.PathLike, text: str, newline: str | None = None) -> None:
    """Append `text` (whole records) to `path` in one write, then flush and fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline=newline) as handle:
        _write_synced(handle, text)


def append_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Append one JSON object a line (see `append_durably`)."""
    append_durably(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Every complete JSON line of `path` (a torn or malformed line is skipped)."""
    records = []
    with open(path) as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _write_synced(handle: IO[str], text: str) -> None:
    handle.write(text)
    handle.flush()
    os.fsync(handle.fileno())
