"""Re-export of the ``curate`` flow (``egom2p/flows/curate.py``)."""

from egom2p.flows.curate import curate

__all__ = ["curate"]
