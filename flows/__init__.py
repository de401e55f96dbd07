"""Prefect flows (thin wiring only; the logic lives in the ``egom2p`` package)."""

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
