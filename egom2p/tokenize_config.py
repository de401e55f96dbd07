"""Typed configuration of one tokenize run: the single source of ``egom2p tokenize``'s flags, the
``tokenize`` flow's parameters and the tokenize deployment's defaults (see :mod:`egom2p.runconfig`),
and the run's fail-fast checks (:meth:`TokenizeConfig.check`).

It lives outside :mod:`egom2p.tokenizers` (which imports torch) so that the command can read and
check it in a fraction of a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .modalities import MODALITIES, get_registry
from .runconfig import ConfigError, absolute, check_output, is_uri, option, param

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TokenizeConfig:
    """What one ``tokenize`` run does: clips tables -> the token DB ``out`` (created or appended to)."""

    clips: list[str] = option(help="clips tables (DIR/<dataset>.lance)", metavar="PATH",
                              deploy=["data/clips/egogen.lance"])
    tokenizers: str = option(help=f"tokenizer directory with {'/ '.join(MODALITIES)}/ checkpoints", metavar="DIR",
                             deploy="checkpoints/tokenizers")
    out: str = option(help="token DB, e.g. tokens/v1.lance (created or appended to)", metavar="PATH",
                      deploy="tokens/v1.lance")
    modalities: list[str] | None = option(None, "subset of the tokenizers to run (default: every one found)",
                                          choices=MODALITIES)
    batch_size: int = option(8, "clips per actor call")
    commit_every: int = option(256, "clips per Lance commit (one version each)")
    limit: int | None = option(None, "at most N new clips per clips table", metavar="N")
    device: str = option("auto", "auto (GPU actors when a GPU is present), cpu or cuda", choices=DEVICES)
    actors: int | None = option(None, "number of tokenizer actors (default: CPUs, or GPUs on a GPU machine)")
    num_cpus: int | None = option(None, "CPUs of a local Ray started by the run (ignored with RAY_ADDRESS)")
    use_ray: bool = option(True, "tokenize on Ray actors (--no-ray: in this process)", flag="--no-ray")
    storage_options: dict = option(default_factory=dict, help="object-store option for s3:// tables and DBs "
                                   "(default: from AWS_* / EGOM2P_STORAGE_OPTIONS)", flag="--storage-option")

    def __post_init__(self):
        def bad(name: str, problem: str):
            raise ConfigError(f"{param(TokenizeConfig, name)} {problem}")

        if isinstance(self.clips, str):
            self.clips = [self.clips]
        # relative to where the run starts: Ray workers do not share the command's working directory
        self.clips = [absolute(p) for p in self.clips]
        self.tokenizers, self.out = absolute(self.tokenizers), absolute(self.out)
        if not self.clips:
            bad("clips", "needs at least one clips table")
        if self.modalities is not None:
            known = get_registry().names  # every registered modality (the CLI offers the built-in ones)
            unknown = [m for m in self.modalities if m not in known]
            if unknown:
                bad("modalities", f"has unknown modalities {unknown}; known: {', '.join(known)}")
        for name in ("batch_size", "commit_every", "limit", "actors", "num_cpus"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                bad(name, f"must be positive, got {v}")
        if self.device not in DEVICES:
            bad("device", f"must be one of {', '.join(DEVICES)}, got {self.device!r}")
        self.storage_options = dict(self.storage_options or {})

    def options(self, path: str) -> dict | None:
        """Storage options for ``path`` (explicit ones over the environment's; None for a local path)."""
        from .storage import storage_options

        return storage_options(path, self.storage_options)

    def check(self) -> None:
        """The inputs exist (every clips table, the tokenizer directory with the wanted modalities) and
        the output can be written; cheap (no Lance, torch, Prefect or Ray). Raises ConfigError naming
        the parameter. The flow's prepare step then opens and checks the tables and tokenizers."""
        for p in self.clips:
            if is_uri(p):
                continue
            if not os.path.exists(p):
                raise ConfigError(f"{param(TokenizeConfig, 'clips')}: {p}: clips table not found")
            if not os.path.isdir(os.path.join(p, "_versions")):
                raise ConfigError(f"{param(TokenizeConfig, 'clips')}: {p}: not a Lance table (no _versions/)")
        d = Path(self.tokenizers)
        if not d.is_dir():
            raise ConfigError(f"{param(TokenizeConfig, 'tokenizers')}: {d}: tokenizer directory not found "
                              f"(expected sub-directories {', '.join(get_registry().names)})")
        wanted = self.modalities or [m for m in get_registry().names if (d / m).is_dir()]
        missing = [m for m in wanted if not (d / m).is_dir()]
        if not wanted or missing:
            raise ConfigError(f"{param(TokenizeConfig, 'tokenizers')}: {d}: no tokenizer for "
                              f"{', '.join(missing) or 'any modality'} (expected {d}/<modality>/)")
        check_output(TokenizeConfig, "out", self.out, "Lance table (a folder)")
