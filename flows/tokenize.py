"""Re-export of the ``tokenize`` flow (``egom2p/flows/tokenize.py``)."""

from egom2p.flows.tokenize import tokenize

__all__ = ["tokenize"]
