"""Curation: raw datasets -> standard clips tables (split -> annotate -> standardize -> encode -> write).

* :mod:`.stages`: each stage as a pure function (no Ray, no Prefect);
* :mod:`.ray_ops`: the Ray Data operators wrapping them;
* :mod:`.pipeline`: :class:`CurationRun`, one run step by step (resumable, one writer per dataset);
* :mod:`.quarantine`: what failed, where and why (``OUT/<dataset>.quarantine.jsonl``);
* :mod:`.summary`: the run summary with per-modality coverage (``OUT/<dataset>.summary.json``).

The Prefect flow ``curate`` (``egom2p/flows/curate.py``) and ``egom2p curate`` drive :class:`CurationRun`.
"""

from .config import CurateConfig
from .pipeline import CurateError, CurationRun
from .quarantine import QuarantineRecord, read_quarantine
from .summary import RunSummary

__all__ = ["CurateConfig", "CurateError", "CurationRun", "QuarantineRecord", "RunSummary", "read_quarantine"]
