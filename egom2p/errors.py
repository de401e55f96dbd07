"""The project's error base class and how the command lines report it.

Every error that means "bad input, or a missing, damaged or foreign artefact" derives from
:class:`EgoM2PError` (each module keeps its own subclass, e.g. ``ClipsTableError``,
``TokenDBError``, ``TokenizerError``, ``CheckpointError``) and carries a message that names the
file or key and the problem. ``egom2p`` and ``egom2p-train`` catch these once, in their ``main``,
print ``<prog>: <message>`` as one line on stderr and exit with :data:`EXIT_USER_ERROR`; any other
exception is a bug and keeps its traceback. ``--debug`` or ``EGOM2P_DEBUG=1`` shows the traceback
of user errors as well.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from contextlib import contextmanager

EXIT_USER_ERROR = 2
DEBUG_ENV = "EGOM2P_DEBUG"


class EgoM2PError(Exception):
    """Bad input, or a missing, damaged or foreign artefact; the message names the file or key."""


class IntegrityError(EgoM2PError):
    """An artefact's bytes differ from the content hash recorded when it was written (damage, truncation)."""


class ForeignArtefactError(EgoM2PError):
    """An artefact made by another tokenizer (or model) than the one the caller was built with."""


class SourceError(EgoM2PError, RuntimeError):
    """Bad or unreadable raw input; the message names the file and the problem. Quarantined by flows.

    Raised by the dataset adapters and by the safe readers (:mod:`egom2p.safeio`) they use; importable
    from :mod:`egom2p.adapters.base` too."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AnnotatorUnavailable(EgoM2PError, RuntimeError):
    """A depth annotator cannot run (unknown name, missing checkpoint, ...); raised at flow start.

    Raised by :mod:`egom2p.annotators` and by the RollingDepth model it wraps; importable from
    :mod:`egom2p.annotators` too."""


# OS errors that name a file are user errors too (a path that does not exist, cannot be read, ...).
_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_user_error(e: BaseException) -> bool:
    """True for errors reported as one line (exit 2); False for bugs (traceback)."""
    if isinstance(e, EgoM2PError):
        return True
    return isinstance(e, _FILE_ERRORS) and getattr(e, "filename", None) is not None


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (OS errors as ``FILE: reason``)."""
    if isinstance(e, OSError) and not isinstance(e, EgoM2PError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or e}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


@contextmanager
def as_user_error(*kinds: type[BaseException]):
    """Inside, exceptions of ``kinds`` (e.g. ValueError from a parser) become EgoM2PError with their message."""
    try:
        yield
    except EgoM2PError:
        raise
    except kinds as e:
        raise EgoM2PError(one_line(e)) from e


_NATIVE_LOCK = threading.Lock()


@contextmanager
def native_messages():
    """Collect what native libraries (ffmpeg via decord, open3d's PLY reader) write to file descriptor 2 during
    the block, instead of letting it reach the terminal; yields a list filled with those lines on exit.

    A caller that fails puts the last of them into its one-line error. Only one thread redirects at a time
    (another thread's block runs without redirection), so file descriptor 2 is always restored.
    """
    lines: list[str] = []
    if not _NATIVE_LOCK.acquire(blocking=False):
        yield lines
        return
    try:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no file descriptor 2 to redirect
            yield lines
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                lines.extend(ln.strip() for ln in tmp.read().decode(errors="replace").splitlines() if ln.strip())
    finally:
        _NATIVE_LOCK.release()


def debug_enabled(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def report(prog: str, e: BaseException | str) -> int:
    """Print ``prog: message`` as one line on stderr; returns :data:`EXIT_USER_ERROR`."""
    msg = e if isinstance(e, str) else one_line(e)
    if not msg.split(":", 1)[0].startswith(prog.split()[0]):  # already prefixed by its command
        msg = f"{prog}: {msg}"
    print(" ".join(msg.split()), file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def warn(message: str) -> None:
    """A one-line warning on stderr (a deliberate override, an artefact that cannot be verified, ...)."""
    print(" ".join(message.split()), file=sys.stderr, flush=True)


class _HideUserErrorTracebacks(logging.Filter):
    """Drops the traceback (not the message) of log records whose exception is a user error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_user_error(exc):
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = _HideUserErrorTracebacks()
# Prefect logs a failed task or flow run with its traceback on these loggers (console and API).
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def hide_user_error_tracebacks() -> None:
    """Keep tracebacks of user errors out of the run logs of in-process flows (the message stays)."""
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
