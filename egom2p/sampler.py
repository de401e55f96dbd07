"""The 4M-style masking sampler: token DB rows -> fixed-size input/target token batches.

For every sample (numbered globally: sample ``i`` is the same whatever the number of ranks or
workers) a generator seeded with ``(seed, i)`` decides, in this order:

1. the dataset, with probability proportional to its number of clips (``weighting: size``), equal
   (``uniform``) or proportional to ``size ** (1 / temperature)`` (``temperature``); or explicit
   per-dataset weights;
2. a clip of that dataset (uniformly, with replacement) among the clips that have at least one of the
   mixture's modalities;
3. one concentration ``alpha`` of the mixture {0.01, 0.1, 1, 10} and, over the modalities *present in
   that clip*, a symmetric Dirichlet draw for the input budget and another for the target budget;
   the integer budgets are filled proportionally and capped by each modality's token count (the
   excess goes to the other present modalities); missing modalities get nothing. With the default
   ``masking: balanced`` a random subset of the present modalities (each with probability
   ``target_modality_prob``, at least one) shares the target budget, which is filled first, and the
   input budget takes the tokens left; ``masking: 4m`` fills the input budget first, as the paper
   does (docs/masking.md measures both);
4. per modality a random permutation of its token positions: the first ``n_in`` are inputs, the next
   ``n_tgt`` targets, so inputs and targets are disjoint.

Batches have fixed shapes (``input_budget`` / ``target_budget`` slots, padding marked invalid): a
clip whose present modalities hold fewer tokens than the budgets fills what it has. A budget larger
than all tokens of the mixture's modalities is refused before training starts, as are unknown
modalities and requested datasets with no rows. With ``empty_input_prob`` a share of the samples gets
no inputs at all, which trains the unconditional pass of classifier-free guidance (egom2p.generate).

Rows are read with batched Lance takes (one per batch). The sampler has no hidden state besides
the next batch number, so its state in a checkpoint is ``{"seed", "next_batch"}`` and resuming gives
exactly the batches an uninterrupted run would have seen. ``make_loader`` wraps it in a DataLoader
whose workers are started with ``spawn`` (Lance is not fork-safe); worker ``w`` builds batches
``w, w + W, ...`` and the DataLoader returns them in order, so workers change nothing either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, List, Optional

import numpy as np
import torch

from .errors import EgoM2PError
from . import modality
from .modalities import Registry
from .tokendb import TokenDB, open_token_db, token_column

DEFAULT_ALPHAS = (0.01, 0.1, 1.0, 10.0)
WEIGHTINGS = ("size", "uniform", "temperature")


class SamplerError(EgoM2PError, ValueError):
    """The mixture cannot be sampled from this token DB (raised before training starts)."""


@dataclass
class MixtureConfig:
    datasets: Any = None  # None = every dataset of the split; a list of names; or {name: weight}
    weighting: str = "size"  # size | uniform | temperature (ignored with explicit weights)
    temperature: float = 1.0
    modalities: Optional[List[str]] = None  # None = every modality of the token DB's registry
    alphas: List[float] = field(default_factory=lambda: list(DEFAULT_ALPHAS))
    input_budget: int = 2048
    target_budget: int = 2048
    split: Optional[str] = "train"  # None = all rows
    empty_input_prob: float = 0.0  # share of samples with no inputs (trains the unconditional pass of CFG)
    masking: str = "balanced"  # balanced (target modalities first, docs/masking.md) | 4m (the paper's order)
    target_modality_prob: float = 0.5  # balanced: chance that a present modality takes part in the targets

    @classmethod
    def from_dict(cls, d: dict) -> "MixtureConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------------


def dataset_weights(sizes: dict[str, int], weighting: str = "size", temperature: float = 1.0,
                    explicit: dict | None = None) -> dict[str, float]:
    """Normalised sampling probability of each dataset."""
    names = sorted(sizes)
    if explicit:
        w = np.array([float(explicit[n]) for n in names])
    elif weighting == "size":
        w = np.array([sizes[n] for n in names], dtype=np.float64)
    elif weighting == "uniform":
        w = np.ones(len(names))
    elif weighting == "temperature":
        if temperature <= 0:
            raise SamplerError(f"temperature must be > 0, got {temperature}")
        w = np.array([sizes[n] for n in names], dtype=np.float64) ** (1.0 / temperature)
    else:
        raise SamplerError(f"unknown dataset weighting {weighting!r}; choose one of {WEIGHTINGS}")
    if (w < 0).any() or w.sum() <= 0:
        raise SamplerError(f"dataset weights must be >= 0 with a positive sum, got {dict(zip(names, w))}")
    return dict(zip(names, (w / w.sum()).tolist()))


def allocate(p: np.ndarray, budget: int, caps: np.ndarray) -> np.ndarray:
    """Integer split of ``budget`` proportional to ``p`` with ``alloc <= caps``; the excess of capped
    entries is redistributed (water filling); sums to min(budget, caps.sum())."""
    caps = np.asarray(caps, dtype=np.int64)
    alloc = np.zeros_like(caps)
    remaining = int(min(budget, caps.sum()))
    active = caps > 0
    while remaining > 0:
        w = np.where(active, p, 0.0)
        if w.sum() <= 0:
            w = active.astype(np.float64)
        exact = w / w.sum() * remaining
        share = np.floor(exact).astype(np.int64)
        short = remaining - share.sum()
        if short:  # largest remainders first (ties by index), only among active entries
            order = np.lexsort((np.arange(len(exact)), -(exact - share)))
            order = [i for i in order if active[i]]
            for i in order[:short]:
                share[i] += 1
        share = np.minimum(share, caps - alloc)
        alloc += share
        remaining -= int(share.sum())
        active &= alloc < caps
        if not active.any():
            break
    return alloc


MASKINGS = ("balanced", "4m")


def mask_sample(rng: np.random.Generator, present: list[int], num_tokens: list[int], alphas, input_budget: int,
                target_budget: int, empty_input_prob: float = 0.0, masking: str = "balanced",
                target_modality_prob: float = 0.5) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """One sample's masking: [(modality index, input positions, target positions)] for present modalities.

    ``masking="4m"`` is the paper's (4M's) order: Dirichlet input budget first, then the target
    budget from the tokens left. A small modality (gaze/cam: 30 tokens) then mostly ends up entirely
    among the inputs and is rarely a target. ``"balanced"`` (default) first picks the *target
    modalities* (each present one with probability ``target_modality_prob``, at least one), fills
    the target budget among them first (Dirichlet, capped by their token counts), then the input
    budget from every present modality's remaining tokens (Dirichlet). See docs/masking.md.
    """
    if masking not in MASKINGS:
        raise SamplerError(f"unknown masking {masking!r}; choose one of {MASKINGS}")
    k = len(present)
    alpha = float(alphas[rng.integers(len(alphas))])
    caps = np.array([num_tokens[m] for m in present], dtype=np.int64)
    p_in = _dirichlet(rng, alpha, k)
    p_tgt = _dirichlet(rng, alpha, k)
    empty = empty_input_prob > 0 and rng.random() < empty_input_prob
    if masking == "4m":
        n_in = allocate(p_in, 0 if empty else input_budget, caps)
        n_tgt = allocate(p_tgt, target_budget, caps - n_in)
    else:
        n_tgt = allocate(p_tgt * target_modalities(rng, k, target_modality_prob), target_budget, caps)
        n_in = allocate(p_in, 0 if empty else input_budget, caps - n_tgt)
    out = []
    for j, m in enumerate(present):
        perm = rng.permutation(num_tokens[m])
        out.append((m, np.sort(perm[:n_in[j]]), np.sort(perm[n_in[j]:n_in[j] + n_tgt[j]])))
    return out


def target_modalities(rng: np.random.Generator, k: int, prob: float) -> np.ndarray:
    """0/1 float mask [k]: each of ``k`` modalities is a target modality with probability ``prob``, at least one."""
    chosen = rng.random(k) < prob
    if not chosen.any():
        chosen[rng.integers(k)] = True
    return chosen.astype(np.float64)


def masking_shares(present: list[str], num_tokens: dict[str, int], input_budget: int, target_budget: int,
                   alphas=DEFAULT_ALPHAS, samples: int = 10000, seed: int = 0, **kw) -> dict[str, dict[str, float]]:
    """Monte-Carlo share of samples in which each of the ``present`` modalities is a target (>= 1 target
    token), fully masked (a target with no input token: predicted from the other modalities only), all
    targets (every token a target) and all inputs (every token an input)."""
    rng = np.random.default_rng(seed)
    idx = list(range(len(present)))
    ntok = [int(num_tokens[m]) for m in present]
    acc = np.zeros((len(present), 4))
    for _ in range(samples):
        for j, inp, tgt in mask_sample(rng, idx, ntok, alphas, input_budget, target_budget, **kw):
            acc[j] += (len(tgt) > 0, len(tgt) > 0 and len(inp) == 0, len(tgt) == ntok[j], len(inp) == ntok[j])
    acc /= samples
    keys = ("target", "fully_masked", "all_target", "all_input")
    return {m: dict(zip(keys, acc[j].round(4).tolist())) for j, m in enumerate(present)}


def batch_masking_counts(batch: dict, modalities) -> dict[str, np.ndarray]:
    """Per modality, how many samples of a sampler batch have it as a target and as a fully masked target
    (>= 1 target token, no input token): {"samples": n, "target": [M], "fully_masked": [M]}."""
    enc_mod, enc_valid = batch["enc_mod"], batch["enc_valid"]
    dec_mod, dec_valid = batch["dec_mod"], batch["dec_valid"]
    M = len(modalities)
    is_in = torch.stack([((enc_mod == m) & enc_valid).any(1) for m in range(M)], 1)  # [B, M]
    is_tgt = torch.stack([((dec_mod == m) & dec_valid).any(1) for m in range(M)], 1)
    return {"samples": int(enc_mod.shape[0]), "target": is_tgt.sum(0).cpu().numpy(),
            "fully_masked": (is_tgt & ~is_in).sum(0).cpu().numpy()}


def _dirichlet(rng: np.random.Generator, alpha: float, k: int) -> np.ndarray:
    if k == 1:
        return np.ones(1)
    p = rng.dirichlet([alpha] * k)
    if not np.all(np.isfinite(p)) or p.sum() <= 0:  # tiny alphas can underflow: fall back to one-hot
        p = np.zeros(k)
        p[rng.integers(k)] = 1.0
    return p


# --------------------------------------------------------------------------------------------------
# the sampler
# --------------------------------------------------------------------------------------------------


@dataclass
class SamplerSpec:
    """Everything a worker needs to rebuild the sampler (picklable: spawn-safe)."""

    db_path: str
    db_version: int
    mixture: dict
    seed: int
    batch_size: int  # global batch (all ranks)
    rank: int = 0
    world_size: int = 1
    rows: dict | None = None  # {dataset: row indices} computed once in the main process


class MaskingSampler:
    """Builds batch ``b`` (this rank's share of global batch ``b``) deterministically from the token DB."""

    def __init__(self, db: TokenDB | str, mixture: MixtureConfig | dict, seed: int = 0, batch_size: int = 8,
                 rank: int = 0, world_size: int = 1, db_version: int | str | None = None,
                 rows: dict | None = None):
        self.db = open_token_db(db, db_version) if isinstance(db, str) else db
        self.mix = mixture if isinstance(mixture, MixtureConfig) else MixtureConfig.from_dict(mixture)
        self.seed, self.batch_size, self.rank, self.world_size = int(seed), int(batch_size), rank, world_size
        if self.batch_size % world_size:
            raise SamplerError(f"global batch {batch_size} is not divisible by the {world_size} ranks")
        self.local_batch = self.batch_size // world_size
        self.registry: Registry = self.db.registry
        self.all_modalities = self.registry.names  # modality index = position in the registry (model order)
        if self.mix.modalities is None:  # every modality of the DB, in the order they were registered
            order = [m for m in modality.names() if m in self.all_modalities]
            self.mix = replace(self.mix, modalities=order + [m for m in self.all_modalities if m not in order])
        self._validate_and_index(rows)

    # ---- set-up and checks (all raise before training starts) ------------------------------------

    def _validate_and_index(self, rows: dict | None = None):
        mix, path = self.mix, self.db.path
        unknown = [m for m in mix.modalities if m not in self.all_modalities]
        if unknown:
            raise SamplerError(f"{path}: unknown modality {unknown} in the mixture; the DB registry has "
                               f"{list(self.all_modalities)}")
        if not mix.modalities:
            raise SamplerError("the mixture lists no modalities")
        if mix.masking not in MASKINGS:
            raise SamplerError(f"unknown masking {mix.masking!r}; choose one of {MASKINGS}")
        if not 0 < mix.target_modality_prob <= 1:
            raise SamplerError(f"target_modality_prob must be in (0, 1], got {mix.target_modality_prob}")
        if not mix.alphas or any(float(a) <= 0 for a in mix.alphas):
            raise SamplerError(f"Dirichlet alphas must be positive, got {mix.alphas}")
        self.mod_idx = [self.all_modalities.index(m) for m in mix.modalities]
        self.num_tokens = [self.registry[m].num_tokens for m in self.all_modalities]
        total = sum(self.num_tokens[i] for i in self.mod_idx)
        if mix.input_budget < 0 or mix.target_budget <= 0:
            raise SamplerError(f"budgets must be >= 0 (inputs) and > 0 (targets), got {mix.input_budget}/"
                               f"{mix.target_budget}")
        if mix.input_budget + mix.target_budget > total:
            raise SamplerError(
                f"{path}: input budget {mix.input_budget} + target budget {mix.target_budget} = "
                f"{mix.input_budget + mix.target_budget} tokens is larger than the {total} tokens a clip has in the "
                f"modalities {list(mix.modalities)} (registry {self.registry.config!r}: "
                + ", ".join(f"{m} {self.registry[m].num_tokens}" for m in mix.modalities) + ")")
        if rows is not None:  # a worker: the main process has checked the DB and indexed its rows
            self.rows = {d: np.asarray(r, dtype=np.int64) for d, r in rows.items()}
            self._set_weights()
            return
        import pyarrow.compute as pc

        idx = self.db.index()  # vectorised over the Arrow columns: start-up stays short at millions of rows
        n = idx.num_rows
        rows_ok = (np.ones(n, bool) if mix.split is None
                   else np.asarray(pc.equal(idx.column("split"), mix.split).to_numpy(zero_copy_only=False), bool))
        has_any = np.zeros(n, bool)
        for m in mix.modalities:
            has_any |= np.asarray(idx.column(f"has_{m}").to_numpy(zero_copy_only=False), bool)
        ds_enc = idx.column("dataset").combine_chunks().dictionary_encode()
        ds_names = ds_enc.dictionary.to_pylist()
        ds_codes = ds_enc.indices.to_numpy(zero_copy_only=False)
        in_split = sorted(ds_names[c] for c in np.unique(ds_codes[rows_ok]))
        if mix.datasets is None:
            wanted = in_split
        else:
            wanted = sorted(mix.datasets)
        if not wanted:
            raise SamplerError(f"{path} (version {self.db.version}): no rows in split {mix.split!r}")
        self.rows: dict[str, np.ndarray] = {}
        for d in wanted:
            sel = rows_ok & (ds_codes == (ds_names.index(d) if d in ds_names else -1))
            if not sel.any():
                raise SamplerError(f"{path} (version {self.db.version}): no rows for dataset {d!r} in split "
                                   f"{mix.split!r}; datasets there: {in_split}")
            usable = np.nonzero(sel & has_any)[0]
            if usable.size == 0:
                raise SamplerError(f"{path}: dataset {d!r} has no clip with any of the modalities "
                                   f"{list(mix.modalities)}")
            self.rows[d] = usable
        self._set_weights()

    def _set_weights(self):
        mix = self.mix
        self.datasets = sorted(self.rows)
        explicit = mix.datasets if isinstance(mix.datasets, dict) else None
        w = dataset_weights({d: len(self.rows[d]) for d in self.datasets}, mix.weighting, mix.temperature, explicit)
        self.weights = np.array([w[d] for d in self.datasets])
        self.cum_weights = np.cumsum(self.weights)

    def describe(self) -> str:
        parts = [f"{d}: {len(self.rows[d])} clips, p={p:.3f}" for d, p in zip(self.datasets, self.weights)]
        return (f"token DB {self.db.path} v{self.db.version}; modalities {list(self.mix.modalities)}; budgets "
                f"{self.mix.input_budget} in / {self.mix.target_budget} out; " + "; ".join(parts))

    # ---- one batch -------------------------------------------------------------------------------

    def sample_ids(self, batch: int) -> range:
        start = batch * self.batch_size + self.rank * self.local_batch
        return range(start, start + self.local_batch)

    def batch(self, b: int) -> dict[str, torch.Tensor]:
        """This rank's part of global batch ``b`` as the model's input dict (see egom2p.model)."""
        ids = list(self.sample_ids(b))
        rngs = [np.random.Generator(np.random.PCG64([self.seed, i])) for i in ids]
        rows = []
        for rng in rngs:
            d = self.datasets[min(int(np.searchsorted(self.cum_weights, rng.random() * self.cum_weights[-1],
                                                      side="right")), len(self.datasets) - 1)]
            rows.append(int(self.rows[d][rng.integers(len(self.rows[d]))]))
        cols = [token_column(self.all_modalities[m]) for m in self.mod_idx]
        table = self.db.take(rows, cols)
        toks, present = {}, {}
        for m, c in zip(self.mod_idx, cols):
            arr = table.column(c).combine_chunks()
            ok = ~np.asarray(arr.is_null())
            vals = arr.values.to_numpy(zero_copy_only=False)[arr.offset * self.num_tokens[m]:]
            toks[m] = vals[: len(arr) * self.num_tokens[m]].reshape(len(arr), self.num_tokens[m])
            present[m] = ok
        return self._collate(rngs, toks, present, rows)

    def _collate(self, rngs, toks, present, rows) -> dict[str, torch.Tensor]:
        B, Ni, Nt = len(rngs), self.mix.input_budget, self.mix.target_budget
        out = {k: np.zeros((B, n), np.int64) for k, n in
               (("enc_tok", Ni), ("enc_mod", Ni), ("enc_pos", Ni), ("dec_tok", Nt), ("dec_mod", Nt), ("dec_pos", Nt))}
        enc_valid, dec_valid = np.zeros((B, Ni), bool), np.zeros((B, Nt), bool)
        for b, rng in enumerate(rngs):
            have = [m for m in self.mod_idx if present[m][b]]
            plan = mask_sample(rng, have, self.num_tokens, self.mix.alphas, Ni, Nt, self.mix.empty_input_prob,
                               self.mix.masking, self.mix.target_modality_prob)
            i = t = 0
            for m, inp, tgt in plan:
                row = toks[m][b]
                out["enc_tok"][b, i:i + len(inp)], out["enc_mod"][b, i:i + len(inp)] = row[inp], m
                out["enc_pos"][b, i:i + len(inp)] = inp
                enc_valid[b, i:i + len(inp)] = True
                i += len(inp)
                out["dec_tok"][b, t:t + len(tgt)], out["dec_mod"][b, t:t + len(tgt)] = row[tgt], m
                out["dec_pos"][b, t:t + len(tgt)] = tgt
                dec_valid[b, t:t + len(tgt)] = True
                t += len(tgt)
        batch = {k: torch.from_numpy(v) for k, v in out.items()}
        batch["enc_valid"], batch["dec_valid"] = torch.from_numpy(enc_valid), torch.from_numpy(dec_valid)
        batch["row"] = torch.tensor(rows, dtype=torch.int64)
        return batch

    # ---- state -----------------------------------------------------------------------------------

    def spec(self) -> SamplerSpec:
        return SamplerSpec(self.db.path, self.db.version, self.mix.to_dict(), self.seed, self.batch_size, self.rank,
                           self.world_size, rows=self.rows)


class BatchStream(torch.utils.data.IterableDataset):
    """Batches ``start, start+1, ...`` of a :class:`MaskingSampler`; each DataLoader worker builds every
    W-th batch and opens its own DB handle (spawn-safe: only the picklable spec crosses processes)."""

    def __init__(self, spec: SamplerSpec, start_batch: int = 0, num_batches: int | None = None):
        self.spec, self.start, self.num = spec, int(start_batch), num_batches

    def __iter__(self):
        s = self.spec
        sampler = MaskingSampler(s.db_path, s.mixture, s.seed, s.batch_size, s.rank, s.world_size,
                                 db_version=s.db_version, rows=s.rows)
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        b = self.start + wid
        end = None if self.num is None else self.start + self.num
        while end is None or b < end:
            yield sampler.batch(b)
            b += nw


def make_loader(sampler: MaskingSampler, start_batch: int = 0, num_workers: int = 0,
                num_batches: int | None = None, prefetch_factor: int = 4,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over batches ``start_batch...`` (batch_size=None: the sampler builds whole batches).

    ``pin_memory``: page-locked batches, so that their copy to a GPU overlaps the step."""
    kw = {}
    if num_workers > 0:
        kw = dict(multiprocessing_context="spawn", prefetch_factor=prefetch_factor, persistent_workers=False)
    return torch.utils.data.DataLoader(BatchStream(sampler.spec(), start_batch, num_batches), batch_size=None,
                                       num_workers=num_workers, pin_memory=pin_memory, **kw)
