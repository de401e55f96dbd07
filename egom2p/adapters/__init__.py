"""Dataset adapters: one module per dataset, all with the interface of :mod:`egom2p.adapters.base`."""

import importlib

from .base import (EVAL_DATASETS, KNOWN_DATASETS, SOURCE_DATASETS, Adapter, AdapterNotAvailable, RawSequence,
                   SequenceRef, SourceError, bad_sequence)

__all__ = ["Adapter", "AdapterNotAvailable", "EVAL_DATASETS", "KNOWN_DATASETS", "RawSequence", "SOURCE_DATASETS",
           "SequenceRef", "SourceError", "bad_sequence", "get_adapter"]


# here, not in .base: the adapters import .base, and this looks them up by name
def get_adapter(name: str) -> Adapter:
    """The adapter of a dataset; a clear error when the dataset is unknown or has no adapter yet."""
    if name not in KNOWN_DATASETS:
        raise AdapterNotAvailable(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    try:
        module = importlib.import_module(f"egom2p.adapters.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"egom2p.adapters.{name}":
            raise AdapterNotAvailable(
                f"dataset {name!r} has no adapter yet (expected module egom2p/adapters/{name}.py)") from e
        raise
    return module.ADAPTER
