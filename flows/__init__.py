"""Prefect flows (thin wiring only; the logic lives in the ``egom2p`` package)."""
