"""``egom2p-train``: multimodal masked pretraining on a Lance token database.

    egom2p-train --db tokens/NAME.lance model=tiny train.steps=200 [--out DIR] [--resume CKPT] [--init CKPT]

Arguments after the flags are Hydra overrides of ``egom2p/conf/config.yaml`` (composed with Hydra's
compose API into the typed schema :class:`egom2p.config.TrainRunConfig`; groups ``model=tiny|base``,
``data=tiny|base|uniform``, ``optim=tiny|base``, ``preset=paper``, and any key, e.g.
``data.db_version=3``, ``train.batch_size=64``, ``optim.lr=3e-4``, ``train.total_tokens=400e9``).
A wrong type or an unknown key is refused before anything is loaded (one line on stderr, exit 2).

* ``--resume CKPT`` continues a run exactly (weights, AdamW state, sampler position, RNG, the pinned
  token DB version and the run's config; only dotted overrides such as ``train.steps=400`` apply).
* ``--init CKPT`` starts a new run from another run's weights (post-training on another database);
  the modality registries must match.
* Length: ``train.steps``, or ``train.total_tokens`` (input + target slots, as the paper's 400B
  tokens count them) from which the steps are derived (``train.steps=null``).
* The step: bf16 autocast on CUDA (``train.precision``), TF32 for what stays fp32, the fused AdamW
  kernel, FlexAttention block masks on CUDA (``train.attention``), optional whole-model
  ``torch.compile`` (``train.compile``) and activation checkpointing per block
  (``train.activation_checkpointing``).
* Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m egom2p.train --db ...``: DDP (NCCL on
  CUDA, gloo on CPU; every parameter takes part in every step, so no unused-parameter search), or
  FSDP2 (``train.parallel=fsdp``: ``fully_shard`` per block and at the root) for models that do not fit
  DDP. The global batch ``train.batch_size`` is split over the ranks; the loss is normalised with
  global token counts, so N ranks compute the same loss and gradients as one process.
* Logs: loss per modality, learning rate, tokens/s and MFU (model FLOPs per second over the device's
  bf16 peak, egom2p.perf) on stdout, in ``metrics.jsonl`` and in TensorBoard.

Outputs in ``--out`` (default ``train.out``): ``checkpoints/step_XXXXXXX/`` (see egom2p.checkpoint),
``metrics.jsonl`` (one line per step), ``tb/`` (TensorBoard) and ``config.yaml`` (the typed config).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from .schedule import lr_at

# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


def compose_config(overrides: list[str] | None = None):
    """The composed, typed config (a DictConfig over egom2p.config.TrainRunConfig) for Hydra ``overrides``.

    Raises egom2p.config.ConfigError (one line naming the key and the expected type)."""
    from .config import check, compose

    return _check_length(check(compose("config", overrides)))


def config_from_checkpoint(state: dict, overrides: list[str]):
    """A resumed run's config: the checkpoint's, typed, with dotted overrides (``train.steps=400``) applied."""
    from .config import ConfigError, check, merge_overrides

    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0].lstrip("+~")]
    if groups:
        raise ConfigError(f"--resume keeps the run's config groups; cannot apply {groups} (use --init for a new run)")
    return _check_length(check(merge_overrides(state["config"], overrides)))


def tokens_per_step(cfg) -> int:
    """Input + target slots of one global batch: the unit of ``train.total_tokens`` and the warm-up."""
    return int(cfg.train.batch_size) * (int(cfg.data.input_budget) + int(cfg.data.target_budget))


def run_steps(cfg) -> int:
    """Length of the run in steps: ``train.steps``, or ``train.total_tokens`` / tokens per step rounded up."""
    from .config import ConfigError

    steps, total = cfg.train.steps, cfg.train.total_tokens
    if total is not None:
        if steps is not None:
            raise ConfigError(f"train.steps={steps} and train.total_tokens={total:g} both set the run length; "
                              "set the other to null")
        if total <= 0:
            raise ConfigError(f"train.total_tokens={total:g}: expected a positive number of tokens")
        return max(1, math.ceil(float(total) / tokens_per_step(cfg)))
    if steps is None:
        raise ConfigError("set train.steps or train.total_tokens (both are null)")
    return int(steps)


def _check_length(cfg):
    run_steps(cfg)
    return cfg


# --------------------------------------------------------------------------------------------------
# schedule, optimizer
# --------------------------------------------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, ocfg, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (linear and token embeddings), none on norms, mask token, modality embedding.

    ``ocfg.fused``: the fused AdamW kernel (default null = fused on CUDA and CPU, where PyTorch has it: one
    kernel per parameter instead of about ten; 2.7x faster than the for-loop on the tiny model's CPU step)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not name.startswith("mod_embed") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(ocfg.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    fused = getattr(ocfg, "fused", None)
    if fused is None:
        fused = device is None or torch.device(device).type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=float(ocfg.lr), betas=tuple(float(b) for b in ocfg.betas),
                             **({"fused": True} if fused else {}))


# --------------------------------------------------------------------------------------------------
# devices, distribution, the step's kernels
# --------------------------------------------------------------------------------------------------


def setup_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available")
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, device


def autocast(device: torch.device, precision: str):
    """bf16 autocast (``precision`` bf16, or auto on CUDA) or nothing (fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def parallelize(model: torch.nn.Module, tcfg, world: int, device: torch.device) -> torch.nn.Module:
    """Activation checkpointing -> torch.compile -> DDP or FSDP2, applied to ``model`` (torchtitan's order).

    Module names (and so checkpoint keys) do not change. Returns the module the step calls: ``model``
    itself, or its DDP wrapper. With FSDP2 the blocks are compiled one by one (whole-model compile
    under FSDP2 needs compiled autograd); otherwise the whole model is compiled in place."""
    blocks = [*model.encoder, *model.decoder]
    if tcfg.activation_checkpointing:
        from torch.distributed._composable import checkpoint

        for blk in blocks:
            checkpoint(blk)
    fsdp = _value(tcfg.parallel) == "fsdp" and world > 1
    if tcfg.compile:
        if fsdp:
            for blk in blocks:
                blk.compile()
        else:
            model.compile()
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world,))
        for blk in blocks:
            fully_shard(blk, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True)
    return model


def _value(x) -> str:
    return getattr(x, "value", x)


class _FullState:
    """What ``egom2p.checkpoint`` saves and loads under FSDP2: full (unsharded) state dicts in the same
    layout as an unsharded model's and optimizer's, gathered and scattered with torch.distributed.checkpoint.

    ``gather()`` is collective (every rank calls it); rank 0 then hands ``.model`` and ``.optimizer``
    (objects with ``state_dict()``) to ``save_checkpoint``. ``.optimizer.load_state_dict(sd)`` loads a
    saved optimizer state into the sharded optimizer (every rank, same file)."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer):
        self._model, self._opt = model, opt
        names = {id(p): n for n, p in model.named_parameters()}
        self._order = [names[id(p)] for g in opt.param_groups for p in g["params"]]  # optimizer index -> name
        self.model = _Holder(self._model_sd, None)
        self.optimizer = _Holder(self._opt_sd, self._load_opt)
        self._msd = self._osd = None

    def gather(self) -> "_FullState":
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        self._msd = get_model_state_dict(self._model, options=opts)
        self._osd = get_optimizer_state_dict(self._model, self._opt, options=opts)
        return self

    def _model_sd(self) -> dict:
        return self._msd

    def _opt_sd(self) -> dict:  # names -> optimizer indices, as torch.optim's own state_dict()
        index = {n: i for i, n in enumerate(self._order)}
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in self._osd["param_groups"]]
        return {"state": {index[n]: s for n, s in self._osd["state"].items()}, "param_groups": groups}

    def _load_opt(self, sd: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        groups = [{**g, "params": [self._order[i] for i in g["params"]]} for g in sd["param_groups"]]
        named = {"state": {self._order[int(i)]: s for i, s in sd["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(self._model, self._opt, named, options=StateDictOptions(full_state_dict=True))


class _Holder:
    def __init__(self, get, load):
        self.state_dict, self._load = get, load

    def load_state_dict(self, sd):
        self._load(sd)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def train_step(step_model, model, opt, batch: dict, amp, grad_clip: float, world: int = 1):
    """One optimizer step on ``batch`` (this rank's share): forward under ``amp``, the loss normalised with
    the global target counts, backward, gradient clipping, AdamW. The caller sets the learning rate.

    Returns (loss, {modality: CE}, {modality: global target tokens}, gradient norm before clipping)."""
    from .model import combine_losses

    with amp:
        parts = step_model(batch)
    counts = torch.stack([n for _, n in parts.values()]).float()  # [M] this rank's target tokens
    if world > 1:
        dist.all_reduce(counts)
    global_counts = dict(zip(parts, counts.tolist()))
    loss, per_mod = combine_losses(parts, global_counts, world)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss, per_mod, global_counts, grad_norm

class MaskingLog:
    """How often each modality is a target and fully masked (target without any input token) per sample.

    ``add(batch)`` counts a sampler batch (this rank's samples); ``step_shares()`` gives the last
    batch's shares (metrics.jsonl), ``interval_shares()`` those since the previous call (TensorBoard)
    and ``run_line()`` the whole run's, for stdout.
    """

    def __init__(self, modalities):
        from .sampler import batch_masking_counts

        self.names, self._count = list(modalities), batch_masking_counts
        self.last = self.interval = self.run = None

    def add(self, batch: dict) -> None:
        import numpy as np  # here, not at the top: the GPU checks import this module with torch alone

        c = self._count(batch, self.names)
        v = np.concatenate([[c["samples"]], c["target"], c["fully_masked"]]).astype(np.float64)
        self.last = v
        self.interval = v if self.interval is None else self.interval + v
        self.run = v if self.run is None else self.run + v

    def _shares(self, v) -> dict:
        n, M = max(v[0], 1.0), len(self.names)
        return {**{f"mask_target_{m}": v[1 + i] / n for i, m in enumerate(self.names)},
                **{f"mask_full_{m}": v[1 + M + i] / n for i, m in enumerate(self.names)}}

    def step_shares(self) -> dict:
        return self._shares(self.last)

    def interval_shares(self) -> dict:
        out, self.interval = self._shares(self.interval), None
        return out

    def run_line(self) -> str:
        s = self._shares(self.run)
        return (f"masking over {int(self.run[0])} samples: target " + " ".join(f"{m} {s[f'mask_target_{m}']:.2f}"
                for m in self.names) + " | fully masked " + " ".join(f"{m} {s[f'mask_full_{m}']:.2f}" for m in self.names))


def _log(rank: int, msg: str):
    if rank == 0:
        print(msg, flush=True)


def train(cfg, db_path: str, out: str | None = None, resume: str | None = None, init: str | None = None,
          allow_foreign_tokenizers: bool = False) -> dict:
    """Run training; returns {"losses": [...], "out": path, "checkpoint": last checkpoint dir}.

    ``resume``: a run (its newest intact checkpoint is used) or a step directory. ``resume``/``init``
    on a token DB made with other tokenizers than the checkpoint's is refused unless
    ``allow_foreign_tokenizers``.
    """
    from omegaconf import OmegaConf

    from . import checkpoint as ck
    from . import perf
    from .config import to_container
    from .model import EgoM2P, ModelConfig
    from .sampler import MaskingSampler, MixtureConfig, make_loader
    from .tokendb import open_token_db

    tcfg = cfg.train
    steps = run_steps(cfg)
    rank, world, device = setup_distributed(_value(tcfg.device))
    fsdp = _value(tcfg.parallel) == "fsdp" and world > 1
    if device.type == "cuda" and tcfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if resume:
        resume = resume_from(resume)  # the newest intact checkpoint of a run
    state = ck.read_state(resume) if resume else None
    out_dir = Path(out or (Path(ck.resolve_checkpoint(resume)).parents[1] if resume else tcfg.out))

    # ---- token DB, pinned to a version ----------------------------------------------------------
    version = cfg.data.db_version
    if version is None and state is not None:
        version = state["db"]["version"]
    db = open_token_db(db_path, version)
    if state is not None and os.path.abspath(db.path) != os.path.abspath(state["db"]["path"]):
        _log(rank, f"note: resuming on {db.path}; the run started on {state['db']['path']}")
    for ckpt, st in ((resume, state), (init, ck.read_state(init) if init else None)):
        if st is not None:
            check_db_tokenizers(st, ckpt, db, allow_foreign_tokenizers)
    mcfg = ModelConfig.from_dict(to_container(cfg.model))
    if db.registry.config != mcfg.registry:
        raise ValueError(f"{db.path}: token DB registry {db.registry.config!r} does not match model "
                         f"{cfg.model.get('name', '?')!r} (registry {mcfg.registry!r}); pick the matching model=")

    # ---- sampler (validates the mixture against the DB before anything is trained) ----------------
    mix = MixtureConfig.from_dict(to_container(cfg.data))
    sampler = MaskingSampler(db, mix, seed=int(cfg.seed), batch_size=int(tcfg.batch_size), rank=rank,
                             world_size=world)
    _log(rank, sampler.describe())

    # ---- model (weights before sharding), parallelism, optimizer ---------------------------------
    torch.manual_seed(int(cfg.seed))
    model = EgoM2P(mcfg, db.registry, attention=_value(tcfg.attention))
    if init:
        init_state = ck.read_state(init)
        db.registry.check_compatible(init_state["registry"], what=f"--init checkpoint {init}")
        ck.load_weights(model, init)
        _log(rank, f"initialised from {ck.resolve_checkpoint(init)} (step {init_state['step']})")
    if state is not None:
        ck.load_weights(model, resume)
    model.to(device)
    _log(rank, f"model {cfg.model.get('name', '')}: {model.num_params() / 1e6:.1f}M parameters "
               f"({model.num_params(embeddings=False) / 1e6:.1f}M without token embeddings) on {device}, "
               f"{world} process(es){' (FSDP2)' if fsdp else ''}, attention {model.attention_impl(device)}")
    step_model = parallelize(model, tcfg, world, device)
    opt = make_optimizer(model, cfg.optim, device)
    full_state = _FullState(model, opt) if fsdp else None
    start = 0
    tokens_seen = 0
    if state is not None:
        state = ck.load_training_state(resume, full_state.optimizer if fsdp else opt, map_location=device)
        start, tokens_seen = int(state["step"]), int(state["tokens"])
        _log(rank, f"resumed from {ck.resolve_checkpoint(resume)} at step {start}")

    # ---- bookkeeping -----------------------------------------------------------------------------
    step_tokens = tokens_per_step(cfg)
    total_tokens = steps * step_tokens
    if tcfg.total_tokens is not None:
        _log(rank, f"train.total_tokens={float(tcfg.total_tokens):.4g}: {steps} steps of {step_tokens} tokens")
    vocab = {m: db.registry[m].vocab_size for m in model.modalities}
    peak = perf.peak_flops(device, tcfg.get("peak_tflops"))
    writer = None
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        if bool(tcfg.tensorboard):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=start + 1)
    metrics_path = out_dir / "metrics.jsonl"
    if rank == 0 and start == 0 and metrics_path.exists():
        metrics_path.unlink()
    if rank == 0 and start > 0 and metrics_path.exists():  # drop lines past the resumed step
        kept = [ln for ln in metrics_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        metrics_path.write_text("".join(k + "\n" for k in kept))
    db_info = {"path": db.path, "version": db.version, "format": db.format, "tokenizers": db.tokenizers,
               "num_rows": db.num_rows}
    config_dict = to_container(cfg)

    def save(step: int) -> Path | None:
        """Every rank calls this (FSDP2 gathers the full state); rank 0 writes."""
        src_model, src_opt = (full_state.gather().model, full_state.optimizer) if fsdp else (model, opt)
        path = None
        if rank == 0:
            st = {"step": step, "tokens": tokens_seen, "sampler": {"seed": int(cfg.seed), "next_batch": step},
                  "config": config_dict, "model": mcfg.to_dict(), "registry": db.registry.snapshot(),
                  "db": db_info, "world_size": world, "init": str(ck.resolve_checkpoint(init)) if init else None}
            path = ck.save_checkpoint(out_dir / "checkpoints" / f"step_{step:07d}", model=src_model,
                                      optimizer=src_opt, state=st, keep=int(tcfg.keep_checkpoints))
            print(f"checkpoint {path}", flush=True)
        if world > 1:
            dist.barrier()
        return path

    amp = autocast(device, _value(tcfg.precision))
    loader = make_loader(sampler, start_batch=start, num_workers=int(tcfg.num_workers),
                         num_batches=max(steps - start, 0), pin_memory=device.type == "cuda")
    losses: list[float] = []
    last_ckpt = None
    t_last, tok_last, flops_last = time.perf_counter(), 0.0, 0.0
    model.train()
    masking = MaskingLog(model.modalities)
    for step, batch in zip(range(start, steps), loader):
        masking.add(batch)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "row"}
        tokens_seen += step_tokens
        lr = lr_at(tokens_seen, total_tokens, float(cfg.optim.lr), float(cfg.optim.min_lr),
                   float(cfg.optim.warmup_tokens))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, per_mod, global_counts, grad_norm = train_step(step_model, model, opt, batch, amp,
                                                             float(cfg.optim.grad_clip), world)

        # ---- logging: global loss = sum of the ranks' shares / world ---------------------------
        mods = sorted(per_mod)
        vec = torch.stack([loss.detach() / world] + [per_mod[m] for m in mods]).float()
        if world > 1:
            dist.all_reduce(vec)
        vals = vec.tolist()
        losses.append(vals[0])
        tok_last += step_tokens
        flops_last += perf.step_flops(mcfg, vocab, int(tcfg.batch_size), int(mix.input_budget),
                                      int(mix.target_budget), global_counts)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        log_now = (step + 1) % int(tcfg.log_every) == 0 or step == start or step + 1 == steps
        if rank == 0:
            rec = {"step": step + 1, "loss": vals[0], **{f"loss_{m}": v for m, v in zip(mods, vals[1:])}, "lr": lr,
                   "grad_norm": grad_norm, "tokens": tokens_seen, **masking.step_shares()}
            if log_now:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                dt = max(now - t_last, 1e-9)
                tps, flops_s = tok_last / dt, flops_last / dt
                util = perf.mfu(flops_s, peak, world)
                t_last, tok_last, flops_last = now, 0.0, 0.0
                rec.update({"tokens_per_s": tps, "tflops_per_s": flops_s / 1e12, "mfu": util})
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if writer is not None:
                writer.add_scalar("train/loss", vals[0], step + 1)
                for m, v in zip(mods, vals[1:]):
                    writer.add_scalar(f"train/loss_{m}", v, step + 1)
                writer.add_scalar("train/lr", lr, step + 1)
                writer.add_scalar("train/grad_norm", grad_norm, step + 1)
                if log_now:
                    writer.add_scalar("train/tokens_per_s", tps, step + 1)
                    writer.add_scalar("train/tflops_per_s", flops_s / 1e12, step + 1)
                    if util is not None:
                        writer.add_scalar("train/mfu", util, step + 1)
                    for k, v in masking.interval_shares().items():
                        writer.add_scalar(f"masking/{k[5:]}", v, step + 1)
            if log_now:
                per = " ".join(f"{m} {v:.3f}" for m, v in zip(mods, vals[1:]))
                print(f"step {step + 1:>6}/{steps}  loss {vals[0]:.4f}  [{per}]  lr {lr:.2e}  "
                      f"{tps:,.0f} tok/s  MFU {'n/a' if util is None else f'{100 * util:.1f}%'}", flush=True)
                if step == start or step + 1 == steps:
                    print(masking.run_line(), flush=True)
        if (step + 1) % int(tcfg.ckpt_every) == 0 or step + 1 == steps:
            last_ckpt = save(step + 1)
    if writer is not None:
        writer.close()
    return {"losses": losses, "out": str(out_dir), "checkpoint": str(last_ckpt) if last_ckpt else None}


def resume_from(path: str) -> str:
    """The step directory ``--resume PATH`` continues from: the newest intact checkpoint of a run (says so
    when newer ones are damaged), or PATH itself when it names a step directory (refused if damaged)."""
    from .checkpoint import resume_point

    return str(resume_point(path, say=lambda m: _log(int(os.environ.get("RANK", "0")), m)))


def check_db_tokenizers(state: dict, ckpt: str, db, allow: bool = False) -> None:
    """Refuse continuing a checkpoint on a token DB made with other tokenizers (egom2p.integrity)."""
    from .checkpoint import resolve_checkpoint
    from .integrity import check_tokenizer_identities

    check_tokenizer_identities((state.get("db") or {}).get("tokenizers") or {}, db.tokenizers,
                               recorded_in=f"checkpoint {resolve_checkpoint(ckpt)}", actual_in=f"token DB {db.path}",
                               allow=allow)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="egom2p-train",
        description="Train EgoM2P (multimodal masked pretraining) on a Lance token database.",
        epilog="examples:\n"
               "  egom2p-train --db tokens/demo.lance model=tiny train.steps=200 --out runs/tiny\n"
               "  egom2p-train --db tokens/demo.lance --resume runs/tiny train.steps=400\n"
               "  egom2p-train --db tokens/other.lance --init runs/tiny model=tiny --out runs/post\n"
               "  egom2p-train --db tokens/v3.lance preset=paper       # the official base recipe, 500B tokens\n"
               "  egom2p-train preset=paper --print-config             # the composed, typed config\n"
               "  torchrun --nproc_per_node 8 -m egom2p.train --db tokens/v3.lance model=base",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=None, help="token database, e.g. tokens/v3.lance (version: data.db_version=...); "
                                              "required unless --print-config")
    p.add_argument("--out", default=None, help="run directory (default: train.out, or the resumed run's)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue a run exactly from a checkpoint")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from a checkpoint's weights (new run)")
    p.add_argument("--print-config", action="store_true", help="print the composed, typed config and exit")
    p.add_argument("--allow-foreign-tokenizers", action="store_true",
                   help="--init/--resume on a token DB made with other tokenizers than the checkpoint's")
    p.add_argument("--debug", action="store_true", help="show the traceback of input errors (also EGOM2P_DEBUG=1)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=tiny train.steps=200 preset=paper")
    return p


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .checkpoint import read_state
    from .errors import EgoM2PError, debug_enabled, is_user_error, one_line, report

    args = build_parser().parse_intermixed_args(argv)

    def fail(msg) -> int:
        print(f"egom2p-train: error: {msg}", file=sys.stderr)
        return 2

    if args.resume and args.init:
        return fail("--resume and --init exclude each other")
    try:
        if args.resume:
            args.resume = resume_from(args.resume)
        # the config first: a wrong key or type is refused before the token DB is read
        cfg = config_from_checkpoint(read_state(args.resume), args.overrides) if args.resume else \
            compose_config(args.overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        if not args.db:
            return fail("--db is required (the token database to train on)")
        result = train(cfg, args.db, out=args.out, resume=args.resume, init=args.init,
                       allow_foreign_tokenizers=args.allow_foreign_tokenizers)
    except (EgoM2PError, HydraException, OmegaConfBaseException, ValueError, KeyError, OSError) as e:
        # input, config and artefact errors: one line on stderr, exit 2 (bugs keep their traceback)
        if debug_enabled(args.debug) or (isinstance(e, OSError) and not is_user_error(e)):
            raise
        return report("egom2p-train", f"error: {one_line(e)}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result["losses"]:
        print(f"done: {len(result['losses'])} steps, loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}; "
              f"run in {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
