"""Curation: raw datasets -> standard clips tables (split -> annotate -> standardize -> encode -> write).

* :mod:`.stages`: each stage as a pure function (no Ray, no Prefect);
* :mod:`.ops`: the same stages as :class:`egom2p.runner.Stage` s (Arrow batches; on Ray Data or locally);
* :mod:`.pipeline`: the steps of one run as functions of plain parameters, and :class:`CurationRun`
  chaining them (resumable, idempotent, workers write);
* :mod:`.quarantine`: what failed, where and why (``OUT/<dataset>.quarantine.jsonl``);
* :mod:`.summary`: the run summary with per-modality coverage (``OUT/<dataset>.summary.json``).

The Prefect flow ``curate`` (``egom2p/flows/curate.py``) and ``egom2p curate`` drive :class:`CurationRun`.
"""

from .config import CurateConfig
from .pipeline import CurateError, CurationRun
from .quarantine import QuarantineRecord, read_quarantine
from .summary import RunSummary

__all__ = ["CurateConfig", "CurateError", "CurationRun", "QuarantineRecord", "RunSummary", "read_quarantine"]
