"""Running the model on windows: tokenize the conditioning, generate the target, detokenize.

:class:`TaskRunner` holds a model, its registry and the matching tokenizers; :meth:`TaskRunner.run`
takes windows of standard-clip inputs and returns the target tokenizer's decoded output. The
conditioning modality is encoded (video tokens from the 16 frames at 8 FPS the tokenizer picks), the
target is generated with the task's official preset, then decoded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..modalities import Registry
from ..modality import info as modality_info
from .spec import TaskInputError, TaskSpec

# How ``TaskRunner.sampling`` draws its samples: from the model's distribution. At the presets' temperature
# 0.01 the samples barely differ (measured on the demo: gaze MSE of the mean of 8 samples 0.0224 there,
# 0.0148 at temperature 1, against 0.0236 for one preset decode).
SAMPLING = {"temperature": 1.0, "top_p": 1.0}


def check_registries(model_registry: Registry, tokenizers: dict, ckpt: str = "", tokenizers_dir: str = "") -> None:
    """Refuse a checkpoint whose modality registry differs from the tokenizers' (clear message)."""
    for name, tok in tokenizers.items():
        if name not in model_registry.modalities:
            raise TaskInputError(f"tokenizer {name!r} in {tokenizers_dir or 'the tokenizers'} is not a modality of "
                                 f"the checkpoint {ckpt} (registry {model_registry.config!r}: {model_registry.names})")
        mine = model_registry[name]
        if tok.spec != mine:
            raise TaskInputError(
                f"modality registry mismatch: checkpoint {ckpt} (registry {model_registry.config!r}) has {name} = "
                f"{mine.token_grid} tokens, vocab {mine.vocab_size}, image {mine.image_size}; the {name} tokenizer "
                f"in {tokenizers_dir} has {tok.spec.token_grid} tokens, vocab {tok.spec.vocab_size}, image "
                f"{tok.spec.image_size}. Use tokenizers trained with the checkpoint's registry.")


@dataclass
class Timing:
    encode_s: float = 0.0
    generate_s: float = 0.0
    decode_s: float = 0.0
    windows: int = 0

    @property
    def total_s(self) -> float:
        return self.encode_s + self.generate_s + self.decode_s

    def as_dict(self) -> dict:
        return {"encode_s": self.encode_s, "generate_s": self.generate_s, "decode_s": self.decode_s,
                "total_s": self.total_s, "windows": self.windows}


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def _task(task) -> TaskSpec:
    from .table import get_task

    return get_task(task) if isinstance(task, str) else task


@dataclass
class TaskRunner:
    """A model, its registry and the matching tokenizers; runs a task on batches of windows."""

    model: object
    registry: Registry
    tokenizers: dict
    device: str = "cpu"
    generation: dict = field(default_factory=dict)  # overrides of the preset (e.g. {"steps": 8})
    seed: int = 0
    checkpoint: dict = field(default_factory=dict)  # the checkpoint's state.json (+ "path"), when loaded from one
    # decoded samples per window, averaged in the target's geometry (its registry entry's ``average``): the
    # point estimate that minimises squared error; use it with SAMPLING (see :meth:`sampling`)
    samples: int = 1
    # decode the expected code of each target token under the model's distribution (one pass; see
    # :meth:`expectation`) instead of generated tokens
    expected: bool = False

    @classmethod
    def load(cls, ckpt, tokenizers_dir, device: str = "cpu", allow_foreign_tokenizers: bool = False,
             **kw) -> "TaskRunner":
        """Load a verified checkpoint (egom2p.checkpoint) and tokenizers; refuse mismatched registries and
        tokenizers other than those the model was trained with (unless ``allow_foreign_tokenizers``)."""
        from ..checkpoint import load_model
        from ..integrity import check_tokenizer_identities
        from ..tokenizers import load_tokenizers

        ckpt, tokenizers_dir = os.fspath(ckpt), os.fspath(tokenizers_dir)
        if not os.path.exists(ckpt):
            raise TaskInputError(f"{ckpt}: checkpoint not found")
        if not os.path.isdir(tokenizers_dir):
            raise TaskInputError(f"{tokenizers_dir}: tokenizers directory not found")
        model, registry, info = load_model(ckpt, device=device)
        toks = load_tokenizers(tokenizers_dir, device=device)
        check_registries(registry, toks, ckpt, tokenizers_dir)
        check_tokenizer_identities((info.get("db") or {}).get("tokenizers") or {},
                                   {m: t.identity for m, t in toks.items()}, recorded_in=f"checkpoint {info['path']}",
                                   actual_in=tokenizers_dir, allow=allow_foreign_tokenizers)
        return cls(model=model, registry=registry, tokenizers=toks, device=device, checkpoint=info, **kw)

    def sampling(self, samples: int) -> "TaskRunner":
        """This runner, outputting the mean of ``samples`` samples drawn from the model's distribution
        (:data:`SAMPLING`: temperature 1, nucleus off)."""
        from dataclasses import replace

        return replace(self, samples=int(samples), generation={**self.generation, **SAMPLING})

    def expectation(self) -> "TaskRunner":
        """This runner, outputting the decode of the expected code: every target token is queried at once
        (:func:`egom2p.generate.target_distribution`, the preset's guidance) and its tokenizer decodes the
        probability-weighted mean code (``Tokenizer.decode_expected``). A point estimate like the mean of
        samples, without the sampling noise, at the cost of one forward pass."""
        from dataclasses import replace

        return replace(self, expected=True, samples=1)

    def image_size(self) -> int:
        return int(next(s.image_size for s in self.registry if s.image_size))  # the video modalities' side

    def tokenizer(self, modality: str):
        if modality not in self.tokenizers:
            raise TaskInputError(f"no {modality} tokenizer loaded (have {sorted(self.tokenizers)})")
        return self.tokenizers[modality]

    def config(self, task: TaskSpec):
        """The task's official preset (a name egom2p.generate resolves), with ``generation`` overrides applied."""
        if not self.generation:
            return task.preset
        from dataclasses import replace

        from .. import generate as G

        return replace(G.get_preset(task.preset), **self.generation)

    def generate_tokens(self, task: TaskSpec, cond: dict, cfg, generator, first: int):
        """Target tokens [B, num_tokens] for conditioning tokens ``cond`` (windows ``first``.. of this run)."""
        import torch

        from ..generate import generate

        with torch.no_grad():
            return generate(self.model, cond, [task.target], cfg, generator=generator)[task.target]

    def round_trip(self, modality: str, x: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Standard-clip arrays of ``modality`` [B, 60, ...] encoded and decoded by its tokenizer."""
        tok = self.tokenizer(modality)
        return np.concatenate([np.asarray(tok.decode(tok.encode(x[i:i + batch_size])))
                               for i in range(0, len(x), batch_size)], 0)

    def token_nll(self, task: TaskSpec | str, inputs: dict[str, np.ndarray], targets: np.ndarray,
                  batch_size: int = 8) -> np.ndarray:
        """float [W, 2]: per window, the NLL (nats per token) of the tokens of ``targets`` (the task's target,
        standard-clip arrays [W, 60, ...], encoded by its tokenizer) given the task's ``inputs``, and given
        no input (:func:`egom2p.generate.token_nll`)."""
        import torch

        from ..generate import token_nll

        task = _task(task)
        out = []
        for i in range(0, len(targets), batch_size):
            cond = {m: self._encode(m, inputs[m][i:i + batch_size]) for m in task.inputs}
            given, without = token_nll(self.model, cond, task.target,
                                       self._encode(task.target, targets[i:i + batch_size]))
            out.append(torch.stack([given, without], 1).cpu().numpy())
        return np.concatenate(out, 0)

    def _encode(self, modality: str, x: np.ndarray):
        import torch

        return torch.as_tensor(np.asarray(self.tokenizer(modality).encode(x)), dtype=torch.long, device=self.device)

    def run(self, task: TaskSpec | str, inputs: dict[str, np.ndarray], batch_size: int = 8,
            timing: Timing | None = None, progress: bool = False) -> np.ndarray:
        """Windows of standard-clip inputs {modality: [W, 60, ...]} -> decoded target for each window.

        Returns the tokenizer's decode output: cam [W, 60, 4, 4]; gaze [W, 60, 2]; depth
        [W, 16, S, S]; rgb uint8 [W, 16, S, S, 3]. With ``samples`` > 1: the mean of that many decoded
        samples per window (the target's ``average``); with ``expected``: the decode of the expected code.
        """
        import torch

        task = _task(task)
        missing = [m for m in task.inputs if m not in inputs]
        if missing:
            raise TaskInputError(f"task {task.name} needs {missing}")
        n = len(next(iter(inputs.values())))
        cfg = self.config(task)
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        timing = timing if timing is not None else Timing()
        outs = []
        rng = range(0, n, batch_size)
        if progress:
            from tqdm import tqdm

            rng = tqdm(rng, desc=f"{task.name} windows", unit="batch")
        for i in rng:
            t0 = time.perf_counter()
            cond = {m: self._encode(m, inputs[m][i:i + batch_size]) for m in task.inputs}
            _sync(self.device)
            timing.encode_s += time.perf_counter() - t0
            k = max(1, self.samples)  # the samples of a batch go through the model as one batch, k blocks
            cond = {m: t.repeat(k, *([1] * (t.dim() - 1))) for m, t in cond.items()} if k > 1 else cond
            dec = self._generate_and_decode(task, cond, cfg, gen, i, timing)
            if k > 1:
                dec = modality_info(task.target).average(dec.reshape(k, len(dec) // k, *dec.shape[1:]))
            outs.append(dec)
        timing.windows += n
        return np.concatenate(outs, 0)

    def _generate_and_decode(self, task: TaskSpec, cond: dict, cfg, gen, first: int, timing: Timing) -> np.ndarray:
        """Conditioning tokens -> the decoded target of each row: generated tokens decoded, or with ``expected``
        the decode of the expected codes of the one-pass distributions."""
        from ..generate import get_config, target_distribution

        t1 = time.perf_counter()
        if self.expected:
            probs = target_distribution(self.model, cond, task.target, guidance=get_config(cfg).guidance)
            _sync(self.device)
            t2 = time.perf_counter()
            dec = self.tokenizer(task.target).decode_expected(probs)
        else:
            tokens = self.generate_tokens(task, cond, cfg, gen, first)
            _sync(self.device)
            t2 = time.perf_counter()
            spec = self.registry[task.target]
            if tokens.min() < 0 or tokens.max() >= spec.vocab_size:
                raise RuntimeError(f"generated {task.target} tokens outside [0, {spec.vocab_size})")
            dec = self.tokenizer(task.target).decode(tokens.detach().cpu())
        timing.generate_s += t2 - t1
        timing.decode_s += time.perf_counter() - t2
        return dec.detach().cpu().numpy() if hasattr(dec, "detach") else np.asarray(dec)
