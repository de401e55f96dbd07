"""The learning-rate schedule shared by model training (:mod:`egom2p.train`) and tokenizer training
(:mod:`egom2p.tokenizers.train`): linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def lr_at(tokens: float, total_tokens: float, lr: float, min_lr: float, warmup_tokens: float) -> float:
    """Linear warm-up over ``warmup_tokens`` then cosine decay to ``min_lr`` at ``total_tokens``.

    The position may count anything that grows (tokens seen by the model, optimizer steps of a tokenizer)."""
    if warmup_tokens > 0 and tokens < warmup_tokens:
        return lr * tokens / warmup_tokens
    span = max(total_tokens - warmup_tokens, 1.0)
    progress = min(max((tokens - warmup_tokens) / span, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
