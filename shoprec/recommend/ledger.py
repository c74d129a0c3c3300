"""Which lines of an events file were ingested before: sha256 of the file's first N lines.

Events in a file carry no id, and identical lines are real (a shopper buying the same thing
twice on one day), so a re-sent file cannot be deduplicated by content. What can be recognised
is the file itself: each ingest batch records the sha256 of the file's lines up to the batch's
last line, in the same transaction as the batch's events. Ingesting a file again skips its
longest recorded prefix, so the same file twice is a no-op, a file that grew (a log appended
to) ingests only its new lines, and a run killed half-way resumes after its last committed
batch. The hash is of content, not path: a copy or a renamed file is recognised too.

Lines are hashed without their line ending (``\\n`` or ``\\r\\n``), so a last line that had no
newline when it was ingested still matches once the file grows past it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO


def _norm(raw: bytes) -> bytes:
    return raw.rstrip(b"\r\n") + b"\n"


def ingested_lines(path: Path, known: dict[int, set[str]]) -> int:
    """How many leading lines of ``path`` were ingested before (0 if none): the longest prefix
    whose hash is among ``known`` (line count -> hashes)."""
    if not known:
        return 0
    last = max(known)
    best = 0
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number > last:
                break
            digest.update(_norm(raw))
            if number in known and digest.hexdigest() in known[number]:
                best = number
    return best


class PrefixHasher:
    """sha256 of a file's first N lines for increasing N, reading the file once."""

    def __init__(self, path: Path) -> None:
        self._fh: BinaryIO = Path(path).open("rb")
        self._digest = hashlib.sha256()
        self._line = 0
        self._previous: str | None = None  # hash through line - 1
        self._terminated = True

    def through(self, line: int) -> list[tuple[int, str]]:
        """(line count, sha256) checkpoints to record once lines up to ``line`` are ingested.

        Where that last line has no newline yet (a log mid-write), the prefix one line shorter
        is recorded too: if the line is completed later, its hash changes and the re-ingest
        resumes just before it instead of at an older checkpoint.
        """
        if line < self._line:
            raise ValueError(f"prefix hashes go forwards: line {line} after {self._line}")
        while self._line < line:
            raw = self._fh.readline()
            if not raw:
                break
            self._previous = self._digest.hexdigest()
            self._digest.update(_norm(raw))
            self._line += 1
            self._terminated = raw.endswith(b"\n")
        out = [(self._line, self._digest.hexdigest())]
        if not self._terminated and self._previous is not None and self._line > 1:
            out.insert(0, (self._line - 1, self._previous))
        return out

    def close(self) -> None:
        self._fh.close()
