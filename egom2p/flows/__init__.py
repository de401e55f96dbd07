"""Prefect flows of egom2p (thin wiring only; the logic lives in the rest of the package).

``egom2p.flows.curate:curate`` and ``egom2p.flows.tokenize:tokenize`` are the deployment entrypoints
(prefect.yaml) and what ``egom2p curate`` / ``egom2p tokenize`` run in-process. The top-level ``flows/``
folder of a checkout re-exports them (the design card's layout).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def progress_artifact(description: str, key: str | None = None, every_s: float = 2.0) -> Callable[[int, int], None]:
    """A Prefect progress artifact and a ``progress(done, total)`` callback updating it at most every ``every_s``."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = create_progress_artifact(0.0, key=key, description=description)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > every_s:
            last[0] = now
            update_progress_artifact(artifact_id, 100.0 * done / max(total, 1))

    return progress


TASK_RETRIES = 2  # every task of the flows is safe to repeat: all writes are idempotent


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task unless it failed on bad input (which a retry cannot fix)."""
    from egom2p.clips import ClipsTableError
    from egom2p.curate import CurateError
    from egom2p.tokendb import TokenDBError
    from egom2p.tokenizers import TokenizerError

    exc = getattr(state, "data", None)
    return not isinstance(exc, (CurateError, ClipsTableError, TokenDBError, TokenizerError, ValueError, FileNotFoundError))
