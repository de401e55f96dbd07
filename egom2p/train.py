"""``egom2p-train``: multimodal masked pretraining on a Lance token database.

    egom2p-train --db tokens/NAME.lance model=tiny train.steps=200 [--out DIR] [--resume CKPT] [--init CKPT]

Arguments after the flags are Hydra overrides of ``egom2p/conf/config.yaml`` (composed with Hydra's
compose API; groups ``model=tiny|base``, ``data=tiny|base|uniform``, ``optim=tiny|base``, and any key,
e.g. ``data.db_version=3``, ``train.batch_size=64``, ``optim.lr=3e-4``).

* ``--resume CKPT`` continues a run exactly (weights, AdamW state, sampler position, RNG, the pinned
  token DB version and the run's config; only dotted overrides such as ``train.steps=400`` apply).
* ``--init CKPT`` starts a new run from another run's weights (post-training on another database);
  the modality registries must match.
* Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m egom2p.train --db ...`` (DDP; NCCL on
  CUDA, gloo on CPU). The global batch ``train.batch_size`` is split over the ranks; the loss is
  normalised with global token counts, so N ranks compute the same loss and gradients as one process.

Outputs in ``--out`` (default ``train.out``): ``checkpoints/step_XXXXXXX/`` (see egom2p.checkpoint),
``metrics.jsonl`` (one line per step), ``tb/`` (TensorBoard) and ``config.yaml``.
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

import numpy as np
import torch
import torch.distributed as dist

CONF_DIR = Path(__file__).resolve().parent / "conf"


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


def compose_config(overrides: list[str] | None = None):
    """The composed config (an OmegaConf DictConfig) for Hydra ``overrides``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides or []))


def _to_container(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def config_from_checkpoint(state: dict, overrides: list[str]):
    """A resumed run's config: the checkpoint's, with dotted overrides (``train.steps=400``) applied."""
    from omegaconf import OmegaConf

    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0].lstrip("+~")]
    if groups:
        raise ValueError(f"--resume keeps the run's config groups; cannot apply {groups} (use --init for a new run)")
    cfg = OmegaConf.create(state["config"])
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    return cfg


# --------------------------------------------------------------------------------------------------
# schedule, optimizer
# --------------------------------------------------------------------------------------------------


def lr_at(tokens: float, total_tokens: float, lr: float, min_lr: float, warmup_tokens: float) -> float:
    """Linear warm-up over ``warmup_tokens`` then cosine decay to ``min_lr`` at ``total_tokens``."""
    if warmup_tokens > 0 and tokens < warmup_tokens:
        return lr * tokens / warmup_tokens
    span = max(total_tokens - warmup_tokens, 1.0)
    progress = min(max((tokens - warmup_tokens) / span, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, ocfg) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (linear and token embeddings), none on norms, mask token, modality embedding."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not name.startswith("mod_embed") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(ocfg.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(ocfg.lr), betas=tuple(float(b) for b in ocfg.betas))


# --------------------------------------------------------------------------------------------------
# distributed
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


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


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


def train(cfg, db_path: str, out: str | None = None, resume: str | None = None, init: str | None = None) -> dict:
    """Run training; returns {"losses": [...], "out": path, "checkpoint": last checkpoint dir}."""
    from omegaconf import OmegaConf

    from . import checkpoint as ck
    from .model import EgoM2P, ModelConfig, combine_losses
    from .sampler import MaskingSampler, MixtureConfig, make_loader
    from .tokendb import open_token_db

    rank, world, device = setup_distributed(str(cfg.train.device))
    state = ck.read_state(resume) if resume else None
    out_dir = Path(out or (Path(ck.resolve_checkpoint(resume)).parents[1] if resume else cfg.train.out))

    # ---- token DB, pinned to a version ----------------------------------------------------------
    version = cfg.data.db_version
    if version is None and state is not None:
        version = state["db"]["version"]
    db = open_token_db(db_path, version)
    if state is not None and os.path.abspath(db.path) != os.path.abspath(state["db"]["path"]):
        _log(rank, f"note: resuming on {db.path}; the run started on {state['db']['path']}")
    mcfg = ModelConfig.from_dict(_to_container(cfg.model))
    if db.registry.config != mcfg.registry:
        raise ValueError(f"{db.path}: token DB registry {db.registry.config!r} does not match model "
                         f"{cfg.model.get('name', '?')!r} (registry {mcfg.registry!r}); pick the matching model=")

    # ---- sampler (validates the mixture against the DB before anything is trained) ----------------
    mix = MixtureConfig.from_dict(_to_container(cfg.data))
    sampler = MaskingSampler(db, mix, seed=int(cfg.seed), batch_size=int(cfg.train.batch_size), rank=rank,
                             world_size=world)
    _log(rank, sampler.describe())

    # ---- model, optimizer ------------------------------------------------------------------------
    torch.manual_seed(int(cfg.seed))
    model = EgoM2P(mcfg, db.registry)
    if init:
        init_state = ck.read_state(init)
        db.registry.check_compatible(init_state["registry"], what=f"--init checkpoint {init}")
        ck.load_weights(model, init)
        _log(rank, f"initialised from {ck.resolve_checkpoint(init)} (step {init_state['step']})")
    model.to(device)
    _log(rank, f"model {cfg.model.get('name', '')}: {model.num_params() / 1e6:.1f}M parameters "
               f"({model.num_params(embeddings=False) / 1e6:.1f}M without token embeddings) on {device}, "
               f"{world} process(es)")
    opt = make_optimizer(model, cfg.optim)
    start = 0
    tokens_seen = 0
    if state is not None:
        ck.load_weights(model, resume)
        state = ck.load_training_state(resume, opt, map_location=device)
        start, tokens_seen = int(state["step"]), int(state["tokens"])
        _log(rank, f"resumed from {ck.resolve_checkpoint(resume)} at step {start}")
    if bool(cfg.train.compile):
        for blk in list(model.encoder) + list(model.decoder):
            blk.compile()
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=True)

    # ---- bookkeeping -----------------------------------------------------------------------------
    steps = int(cfg.train.steps)
    tokens_per_step = int(cfg.train.batch_size) * (mix.input_budget + mix.target_budget)
    total_tokens = steps * tokens_per_step
    writer = None
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        if bool(cfg.train.tensorboard):
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
    config_dict = _to_container(cfg)

    def save(step: int) -> Path:
        st = {"step": step, "tokens": tokens_seen, "sampler": {"seed": int(cfg.seed), "next_batch": step},
              "config": config_dict, "model": mcfg.to_dict(), "registry": db.registry.snapshot(), "db": db_info,
              "world_size": world, "init": str(ck.resolve_checkpoint(init)) if init else None}
        return ck.save_checkpoint(out_dir / "checkpoints" / f"step_{step:07d}", model=model, optimizer=opt, state=st,
                                  keep=int(cfg.train.keep_checkpoints))

    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    loader = make_loader(sampler, start_batch=start, num_workers=int(cfg.train.num_workers),
                         num_batches=max(steps - start, 0))
    losses: list[float] = []
    last_ckpt = None
    t_last, tok_last = time.perf_counter(), 0
    model.train()
    masking = MaskingLog(model.modalities)
    for step, batch in zip(range(start, steps), loader):
        masking.add(batch)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "row"}
        tokens_seen += tokens_per_step
        lr = lr_at(tokens_seen, total_tokens, float(cfg.optim.lr), float(cfg.optim.min_lr),
                   float(cfg.optim.warmup_tokens))
        for g in opt.param_groups:
            g["lr"] = lr
        with amp:
            parts = ddp_model(batch)
        counts = torch.stack([n for _, n in parts.values()]).float()  # [M] this rank's target tokens
        n_valid = torch.stack([batch["enc_valid"].sum(), batch["dec_valid"].sum()]).float()
        if world > 1:
            dist.all_reduce(counts)
            dist.all_reduce(n_valid)
        global_counts = dict(zip(parts, counts.tolist()))
        loss, per_mod = combine_losses(parts, global_counts, world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.optim.grad_clip))
        opt.step()

        # ---- logging: global loss = sum of the ranks' shares / world ---------------------------
        mods = sorted(per_mod)
        vec = torch.stack([loss.detach() / world] + [per_mod[m] for m in mods]).float()
        if world > 1:
            dist.all_reduce(vec)
        vals = vec.tolist()
        losses.append(vals[0])
        tok_last += n_valid.sum().item()
        if rank == 0:
            rec = {"step": step + 1, "loss": vals[0], **{f"loss_{m}": v for m, v in zip(mods, vals[1:])}, "lr": lr,
                   "grad_norm": float(grad_norm), "tokens": tokens_seen, **masking.step_shares()}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if writer is not None:
                writer.add_scalar("train/loss", vals[0], step + 1)
                for m, v in zip(mods, vals[1:]):
                    writer.add_scalar(f"train/loss_{m}", v, step + 1)
                writer.add_scalar("train/lr", lr, step + 1)
                writer.add_scalar("train/grad_norm", float(grad_norm), step + 1)
            if (step + 1) % int(cfg.train.log_every) == 0 or step == start or step + 1 == steps:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                tps = tok_last / max(now - t_last, 1e-9)
                t_last, tok_last = now, 0
                if writer is not None:
                    writer.add_scalar("train/tokens_per_s", tps, step + 1)
                    for k, v in masking.interval_shares().items():
                        writer.add_scalar(f"masking/{k[5:]}", v, step + 1)
                per = " ".join(f"{m} {v:.3f}" for m, v in zip(mods, vals[1:]))
                print(f"step {step + 1:>6}/{steps}  loss {vals[0]:.4f}  [{per}]  lr {lr:.2e}  "
                      f"{tps:,.0f} tok/s", flush=True)
                if step == start or step + 1 == steps:
                    print(masking.run_line(), flush=True)
        if (step + 1) % int(cfg.train.ckpt_every) == 0 or step + 1 == steps:
            if rank == 0:
                last_ckpt = save(step + 1)
                print(f"checkpoint {last_ckpt}", flush=True)
            if world > 1:
                dist.barrier()
    if writer is not None:
        writer.close()
    return {"losses": losses, "out": str(out_dir), "checkpoint": str(last_ckpt) if last_ckpt else None}


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
               "  torchrun --nproc_per_node 8 -m egom2p.train --db tokens/v3.lance model=base",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, help="token database, e.g. tokens/v3.lance (version: data.db_version=...)")
    p.add_argument("--out", default=None, help="run directory (default: train.out, or the resumed run's)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue a run exactly from a checkpoint")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from a checkpoint's weights (new run)")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=tiny train.steps=200")
    return p


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .checkpoint import CheckpointError, read_state
    from .sampler import SamplerError
    from .tokendb import TokenDBError

    args = build_parser().parse_intermixed_args(argv)
    if args.resume and args.init:
        print("egom2p-train: error: --resume and --init exclude each other", file=sys.stderr)
        return 2
    try:
        cfg = config_from_checkpoint(read_state(args.resume), args.overrides) if args.resume else \
            compose_config(args.overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        result = train(cfg, args.db, out=args.out, resume=args.resume, init=args.init)
    except (TokenDBError, SamplerError, CheckpointError, HydraException, OmegaConfBaseException, ValueError,
            KeyError) as e:
        print(f"egom2p-train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result["losses"]:
        print(f"done: {len(result['losses'])} steps, loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}; "
              f"run in {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
