"""Dataset adapters: one module per dataset, all with the interface of :mod:`egom2p.adapters.base`."""

from .base import (EVAL_DATASETS, KNOWN_DATASETS, SOURCE_DATASETS, Adapter, AdapterNotAvailable, RawSequence,
                   SequenceRef, SourceError, bad_sequence, get_adapter)

__all__ = ["Adapter", "AdapterNotAvailable", "EVAL_DATASETS", "KNOWN_DATASETS", "RawSequence", "SOURCE_DATASETS",
           "SequenceRef", "SourceError", "bad_sequence", "get_adapter"]
