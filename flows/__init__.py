"""Re-exports of the Prefect flows, which live in the package (``egom2p/flows/``).

Kept because the design card's layout names ``flows/``; deployments (prefect.yaml) and the
``egom2p curate`` / ``egom2p tokenize`` commands use ``egom2p.flows`` directly.
"""

from egom2p.flows import progress_artifact

__all__ = ["progress_artifact"]
