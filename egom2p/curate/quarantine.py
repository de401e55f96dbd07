"""Quarantine: what could not be curated, where it came from, at which stage and why.

One JSON object per line in ``OUT/<dataset>.quarantine.jsonl``; the file is append-only (each
line is flushed and fsynced as it is written, so a killed run keeps its records) and every record
carries the ``run_id`` of the run that wrote it. On an object store (``OUT`` an ``s3://`` URI),
where objects cannot be appended to, each flush writes one immutable part
``OUT/<dataset>.quarantine.jsonl.parts/<run_id>-<n>.jsonl``; :func:`read_quarantine` reads either
form. A re-run retries quarantined items (they are not in the clips table); if they fail again they
are recorded again under the new run id.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import storage
from ..adapters.base import SequenceRef, SourceError
from ..clip import ClipValidationError
from ..video import VideoError

STAGES = ("discover", "split", "annotate", "standardize", "encode", "write")
#: Errors that describe bad input (their message names the file); others also record where they happened.
_DATA_ERRORS = (SourceError, VideoError, ClipValidationError)


def _path_in_message(msg: str) -> str | None:
    """The file a message starts with ("PATH: problem", the project's error style), if it exists."""
    head = msg.split(": ", 1)[0]
    return head if head and len(head) < 4096 and os.path.exists(head) else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class QuarantineRecord:
    dataset: str
    source: str  # the file or folder that failed (SourceError.path when known, else the sequence path)
    sequence: str | None
    clip_id: str | None  # None when a whole sequence failed
    stage: str  # one of STAGES
    error_type: str
    reason: str
    time: str = field(default_factory=_now)
    run_id: str = ""

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; known: {STAGES}")

    @classmethod
    def from_exception(cls, stage: str, ref: SequenceRef, exc: BaseException, clip_id: str | None = None,
                       run_id: str = "") -> "QuarantineRecord":
        reason = str(exc) or type(exc).__name__
        source = exc.path if isinstance(exc, SourceError) else (_path_in_message(reason) or ref.path)
        if not isinstance(exc, _DATA_ERRORS):
            # an unexpected error: keep the innermost frame so the bug can be found
            tb = traceback.extract_tb(exc.__traceback__)
            if tb:
                last = tb[-1]
                reason += f" [at {Path(last.filename).name}:{last.lineno} in {last.name}]"
        return cls(dataset=ref.dataset, source=str(source), sequence=ref.sequence, clip_id=clip_id, stage=stage,
                   error_type=type(exc).__name__, reason=reason[:2000], run_id=run_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "QuarantineRecord":
        return cls(**json.loads(text))


class QuarantineLog:
    """Appends records to the JSONL file (durably, one line per record), or to parts on an object store."""

    def __init__(self, path: str | os.PathLike, run_id: str, options: dict | None = None):
        self.path = os.fspath(path)
        self.run_id = run_id
        self.options = options
        self.count = 0
        self.by_stage: dict[str, int] = {}
        self._pending: list[str] = []
        self._parts = 0

    def add(self, rec: QuarantineRecord) -> None:
        if not rec.run_id:
            rec.run_id = self.run_id
        if storage.is_uri(self.path):
            self._pending.append(rec.to_json())
        else:
            p = Path(self.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a", encoding="utf-8") as f:
                f.write(rec.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.count += 1
        self.by_stage[rec.stage] = self.by_stage.get(rec.stage, 0) + 1

    def flush(self) -> None:
        """Write the records added since the last flush as one part (object stores; a no-op for local files)."""
        if self._pending:
            part = storage.join(self.path + ".parts", f"{self.run_id}-{self._parts:06d}.jsonl")
            storage.write_bytes(part, ("\n".join(self._pending) + "\n").encode(), self.options)
            self._parts += 1
            self._pending = []


def read_quarantine(path: str | os.PathLike, run_id: str | None = None,
                    options: dict | None = None) -> list[QuarantineRecord]:
    """Records of the quarantine file (optionally of one run); a torn last line (killed writer) is ignored."""
    if storage.is_uri(path):
        text = "".join(storage.read_bytes(p, options).decode("utf-8")
                       for p in storage.list_files(os.fspath(path) + ".parts", options))
        return _parse(text, os.fspath(path), run_id)
    p = Path(path)
    if not p.exists():
        return []
    return _parse(p.read_text(encoding="utf-8"), str(p), run_id)


def _parse(text: str, p: str, run_id: str | None) -> list[QuarantineRecord]:
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = QuarantineRecord.from_json(line)
        except (json.JSONDecodeError, TypeError, ValueError):
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{p}: line {i + 1} is not a quarantine record")
        if run_id is None or rec.run_id == run_id:
            out.append(rec)
    return out
