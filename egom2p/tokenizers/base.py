"""The tokenizer interface (:class:`Tokenizer`), its error and device choice (see :mod:`egom2p.tokenizers`)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EgoM2PError
from ..modalities import ModalitySpec, Registry


class TokenizerError(EgoM2PError, RuntimeError):
    """A tokenizer checkpoint or input is unusable; the message names the file or the problem."""


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Tokenizer:
    """Standard-clip arrays of one modality <-> int64 tokens [B, spec.num_tokens]."""

    modality: str
    spec: ModalitySpec
    registry: Registry
    identity: dict  # at least "kind" and "sha256" of the checkpoint

    def encode(self, x) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def decode(self, tokens) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def decode_expected(self, probs) -> np.ndarray:
        """A distribution over the codes of each token, float [B, spec.num_tokens, vocab] (numpy, or a tensor on
        any device) -> the decode of its
        expected code (the output format of :meth:`decode`). Only tokenizers whose decoder takes code vectors
        have it."""
        raise TokenizerError(f"the {self.modality} tokenizer ({self.identity.get('kind')}) decodes token ids only; "
                             f"it has no expected-code decode")

    def to(self, device) -> "Tokenizer":
        raise NotImplementedError  # pragma: no cover - abstract

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.modality}, kind={self.identity.get('kind')}, "
                f"registry={self.registry.config}, sha256={str(self.identity.get('sha256'))[:12]})")
