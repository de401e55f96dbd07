"""RollingDepth inference: load a checkpoint directory through diffusers, predict snippets, co-align.

A RollingDepth checkpoint (``prs-eth/rollingdepth-v1-0``) is a diffusers pipeline directory::

    model_index.json                      {"_class_name": "RollingDepthPipeline", ...}
    unet/config.json + diffusion_pytorch_model[.fp16].safetensors    UNet2DConditionModel (8 -> 4 ch)
    vae/config.json + diffusion_pytorch_model[.fp16].safetensors     AutoencoderKL (SD 2)
    scheduler/scheduler_config.json                                  DDIMScheduler (v-prediction, trailing)
    text_encoder/config.json + model[.fp16].safetensors              CLIPTextModel
    tokenizer/vocab.json, merges.txt (+ tokenizer_config.json, ...)  CLIPTokenizer

Only safetensors weights are read (never the pickled ``*.bin`` files that also ship), from the
local directory only (``local_files_only``; no hub access).

The model is Marigold-style: the UNet takes the RGB latent concatenated with a noisy depth latent
and predicts (v-parametrised) the depth latent; one DDIM step from pure noise gives the depth. What
makes it a *video* model: every self-attention layer of the UNet attends over the tokens of all
frames of a snippet at once. :class:`CrossFrameAttnProcessor` does this by folding the frame axis
into the token axis (``[(b k), hw, c] -> [b, (k hw), c]``) before attention and unfolding after;
cross-attention (to the empty-text embedding) stays per frame.

One run (:meth:`RollingDepthPipeline.predict`) over a segment of frames:
encode frames -> snippets at each dilation (batched UNet calls) -> decode each snippet ->
co-align all snippets (:mod:`egom2p.rollingdepth.coalign`) -> optional refinement (re-noise the
co-aligned latent to half the schedule and denoise it with overlapping snippets of shrinking
dilation, averaging per frame) -> affine-invariant inverse depth per frame.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from ..errors import AnnotatorUnavailable
from .coalign import CoalignResult, Snippet, cap_dilation, coalign, snippet_indices
from .presets import RollingDepthConfig

log = logging.getLogger(__name__)

#: What a checkpoint directory must hold: component -> (config file, weight-file stem or None, extra files).
COMPONENT_FILES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "unet": ("config.json", "diffusion_pytorch_model", ()),
    "vae": ("config.json", "diffusion_pytorch_model", ()),
    "scheduler": ("scheduler_config.json", None, ()),
    "text_encoder": ("config.json", "model", ()),
    "tokenizer": ("tokenizer_config.json", None, ()),
}
#: The tokenizer's vocabulary: the release ships vocab.json + merges.txt; transformers >= 5 writes tokenizer.json.
TOKENIZER_VOCAB = (("vocab.json", "merges.txt"), ("tokenizer.json",))


def expected_files() -> list[str]:
    """Human-readable list of the files a checkpoint directory needs."""
    out = ["model_index.json"]
    for comp, (cfg, stem, extra) in COMPONENT_FILES.items():
        out.append(f"{comp}/{cfg}")
        if stem:
            out.append(f"{comp}/{stem}.safetensors (or {stem}.fp16.safetensors)")
        out.extend(f"{comp}/{e}" for e in extra)
    out.append("tokenizer/vocab.json + tokenizer/merges.txt (or tokenizer/tokenizer.json)")
    return out


class CheckpointError(AnnotatorUnavailable):
    """The RollingDepth checkpoint directory is missing or incomplete."""


def _weights_variant(folder: Path, stem: str) -> str | None | bool:
    """None: ``stem.safetensors`` exists; "fp16": only the fp16 variant exists; False: neither."""
    if (folder / f"{stem}.safetensors").is_file():
        return None
    if (folder / f"{stem}.fp16.safetensors").is_file():
        return "fp16"
    return False


def checkpoint_problems(checkpoint) -> list[str]:
    """What is missing from a checkpoint directory (empty list: complete)."""
    root = Path(checkpoint)
    if not root.is_dir():
        return [f"directory {root} does not exist"]
    missing = []
    if not (root / "model_index.json").is_file():
        missing.append("model_index.json")
    for comp, (cfg, stem, extra) in COMPONENT_FILES.items():
        folder = root / comp
        if not (folder / cfg).is_file():
            missing.append(f"{comp}/{cfg}")
        if stem and _weights_variant(folder, stem) is False:
            missing.append(f"{comp}/{stem}.safetensors")
        missing.extend(f"{comp}/{e}" for e in extra if not (folder / e).is_file())
    if not any(all((root / "tokenizer" / f).is_file() for f in files) for files in TOKENIZER_VOCAB):
        missing.append("tokenizer/vocab.json + tokenizer/merges.txt (or tokenizer/tokenizer.json)")
    return missing


def check_checkpoint(checkpoint) -> Path:
    """Fail fast, naming the directory and every expected file, when the checkpoint is not usable."""
    if checkpoint is None or str(checkpoint) == "":
        raise CheckpointError(
            "the rollingdepth depth annotator needs a checkpoint directory (--depth-checkpoint DIR): download "
            "prs-eth/rollingdepth-v1-0 (diffusers layout) into a local directory; it must contain: "
            + ", ".join(expected_files()))
    root = Path(checkpoint).expanduser()
    problems = checkpoint_problems(root)
    if problems:
        raise CheckpointError(
            f"RollingDepth checkpoint {root.resolve()} is not usable: missing {', '.join(problems)}. "
            f"Expected the diffusers layout of prs-eth/rollingdepth-v1-0: {', '.join(expected_files())}")
    try:
        index = json.loads((root / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{root / 'model_index.json'}: cannot be read as JSON ({e})") from e
    for comp in ("unet", "vae", "scheduler", "text_encoder", "tokenizer"):
        if comp not in index:
            raise CheckpointError(f"{root / 'model_index.json'}: no '{comp}' entry (not a RollingDepth/Marigold pipeline)")
    if index.get("_class_name") != "RollingDepthPipeline":
        log.warning("%s: _class_name is %r, not 'RollingDepthPipeline'; the UNet may not be trained for "
                    "cross-frame attention", root / "model_index.json", index.get("_class_name"))
    return root


# --------------------------------------------------------------------------------------------
# cross-frame attention


class CrossFrameAttnProcessor(AttnProcessor2_0):
    """Scaled-dot-product attention whose self-attention spans all ``num_view`` frames of a snippet.

    Hidden states arrive as ``[(b k), hw, c]`` (snippet-major, frame-minor); for self-attention they
    are viewed as ``[b, (k hw), c]`` so that every token attends to the tokens of all k frames, then
    viewed back. Cross-attention (``encoder_hidden_states`` given) is per frame, unchanged.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 num_view: int = 1, **kwargs):
        if encoder_hidden_states is None and num_view > 1 and hidden_states.ndim == 3:
            bk, hw, c = hidden_states.shape
            if bk % num_view:
                raise ValueError(f"batch {bk} is not a multiple of the snippet length {num_view}")
            joint = hidden_states.reshape(bk // num_view, num_view * hw, c)  # [b, (k hw), c]
            out = super().__call__(attn, joint, None, attention_mask, temb)
            return out.reshape(bk, hw, out.shape[-1])
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def install_cross_frame_attention(unet: UNet2DConditionModel) -> None:
    """Give every attention layer of the UNet a :class:`CrossFrameAttnProcessor`."""
    unet.set_attn_processor({name: CrossFrameAttnProcessor() for name in unet.attn_processors})


# --------------------------------------------------------------------------------------------
# the pipeline


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp16/bf16/fp32 -> torch dtype; half precision is only used on CUDA (CPU runs fp32)."""
    if device.type != "cuda":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def processing_size(height: int, width: int, resolution: int, multiple: int = 8) -> tuple[int, int]:
    """(h, w) with the longest side ``resolution`` (0: unchanged), aspect kept, rounded to ``multiple``."""
    if resolution <= 0:
        h, w = height, width
    else:
        f = resolution / max(height, width)
        h, w = height * f, width * f
    return max(multiple, int(round(h / multiple)) * multiple), max(multiple, int(round(w / multiple)) * multiple)


@dataclass
class PredictOutput:
    depth: np.ndarray  # [N, h, w] float32 affine-invariant inverse depth at processing resolution
    coaligned: CoalignResult  # the co-alignment (before refinement)
    snippets: list[Snippet]  # every decoded snippet (for inspection)
    dilations: tuple[int, ...]  # dilations actually used (after capping)


class RollingDepthPipeline(DiffusionPipeline):
    """The RollingDepth components (diffusers/transformers classes) plus snippet inference."""

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, scheduler: DDIMScheduler,
                 text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer):
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        install_cross_frame_attention(unet)
        self._empty_embed: torch.Tensor | None = None

    # ---- loading

    @classmethod
    def from_checkpoint(cls, checkpoint, device: str | torch.device | None = None, dtype: str = "fp16",
                        ) -> "RollingDepthPipeline":
        """Load every component from a local checkpoint directory (safetensors only, no hub access)."""
        root = check_checkpoint(checkpoint)
        dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        tdt = torch_dtype(dtype, dev)
        common = dict(local_files_only=True, use_safetensors=True)
        try:
            unet = UNet2DConditionModel.from_pretrained(
                root, subfolder="unet", torch_dtype=tdt, variant=_weights_variant(root / "unet", "diffusion_pytorch_model"), **common)
            vae = AutoencoderKL.from_pretrained(
                root, subfolder="vae", torch_dtype=tdt, variant=_weights_variant(root / "vae", "diffusion_pytorch_model"), **common)
            scheduler = DDIMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
            text_encoder = CLIPTextModel.from_pretrained(
                root, subfolder="text_encoder", dtype=tdt, variant=_weights_variant(root / "text_encoder", "model"), **common)
            tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"RollingDepth checkpoint {root.resolve()}: loading failed ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:300]})") from e
        if unet.config.in_channels != 2 * vae.config.latent_channels:
            raise CheckpointError(f"{root / 'unet/config.json'}: in_channels {unet.config.in_channels} != 2 x VAE latent "
                                  f"channels {vae.config.latent_channels} (not a Marigold-style depth UNet)")
        pipe = cls(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        pipe.to(dev)
        pipe.unet.eval(), pipe.vae.eval(), pipe.text_encoder.eval()
        return pipe

    # ---- small building blocks

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def empty_text_embedding(self) -> torch.Tensor:
        """The conditioning of the empty prompt, [1, T, D] (computed once)."""
        if self._empty_embed is None:
            limit = min(int(self.tokenizer.model_max_length), int(self.text_encoder.config.max_position_embeddings))
            ids = self.tokenizer("", padding="do_not_pad", max_length=limit, truncation=True, return_tensors="pt").input_ids
            self._empty_embed = self.text_encoder(ids.to(self.text_encoder.device))[0].to(self.unet.dtype)
        return self._empty_embed

    def frames_to_tensor(self, frames: np.ndarray, resolution: int) -> torch.Tensor:
        """uint8 [N, H, W, 3] (or gray [N, H, W]) -> float [N, 3, h, w] in [-1, 1] at processing size (on CPU)."""
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if x.ndim == 3:
            x = x[..., None].expand(*x.shape, 3)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        h, w = processing_size(x.shape[2], x.shape[3], resolution, multiple=8)
        if (h, w) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> scaled latents [N, C, H/f, W/f] (the posterior mean)."""
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(self.device, self.vae.dtype)
            out.append(self.vae.encode(x).latent_dist.mode() * self.latent_scale)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Scaled latents [N, C, h, w] -> depth [N, H, W] (mean of the 3 decoded channels), float32."""
        out = []
        for i in range(0, len(latents), batch_size):
            z = latents[i:i + batch_size].to(self.device, self.vae.dtype) / self.latent_scale
            out.append(self.vae.decode(z).sample.float().mean(dim=1))
        return torch.cat(out)

    @torch.no_grad()
    def unet_step(self, rgb_latent: torch.Tensor, depth_latent: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One UNet evaluation on snippets: latents [B, k, C, h, w] -> model output [B, k, C, h, w]."""
        b, k = rgb_latent.shape[:2]
        x = torch.cat([rgb_latent, depth_latent], dim=2).flatten(0, 1)  # [(b k), 2C, h, w]
        cond = self.empty_text_embedding().expand(b * k, -1, -1)
        ts = t.reshape(1).to(self.device).expand(b * k)
        out = self.unet(x.to(self.unet.dtype), ts, encoder_hidden_states=cond,
                        cross_attention_kwargs={"num_view": k}).sample
        return out.reshape(b, k, *out.shape[1:])

    # ---- stages

    @torch.no_grad()
    def predict_snippets(self, rgb_latent: torch.Tensor, indices: list[list[int]], noise: torch.Tensor,
                         config: RollingDepthConfig, desc: str = "snippets", progress: bool = True) -> list[Snippet]:
        """Denoise every snippet (``indices``: frame lists of equal length) and decode it to depth."""
        snippets: list[Snippet] = []
        store = np.float16 if self.unet.dtype == torch.float16 else np.float32
        batches = range(0, len(indices), config.batch_size)
        for i in tqdm(batches, desc=desc, leave=False, disable=not progress):
            idx = indices[i:i + config.batch_size]
            sel = torch.as_tensor(idx, device=rgb_latent.device)  # [b, k]
            rgb = rgb_latent[sel]  # [b, k, C, h, w]
            z = noise[sel].clone()
            self.scheduler.set_timesteps(config.denoise_steps, device=self.device)
            for t in self.scheduler.timesteps:
                pred = self.unet_step(rgb, z, t)
                z = self.scheduler.step(pred, t, z).prev_sample
            depth = self.decode(z.flatten(0, 1), config.vae_batch_size)  # [(b k), H, W]
            depth = depth.reshape(len(idx), len(idx[0]), *depth.shape[1:]).cpu().numpy()
            snippets.extend(Snippet(np.asarray(f), d.astype(store)) for f, d in zip(idx, depth))
        return snippets

    @torch.no_grad()
    def refine(self, rgb_latent: torch.Tensor, depth: np.ndarray, noise: torch.Tensor, config: RollingDepthConfig,
               progress: bool = True) -> np.ndarray:
        """Diffusion refinement of a co-aligned video: [N, H, W] inverse depth -> refined [N, H, W]."""
        n = len(depth)
        d = np.nan_to_num(depth.astype(np.float32), nan=float(np.nanmedian(depth)))
        lo, hi = float(d.min()), float(d.max())
        d = (d - lo) / (hi - lo if hi > lo else 1.0) * 2.0 - 1.0  # [-1, 1], as the model's depth targets
        img = torch.from_numpy(d)[:, None].expand(-1, 3, -1, -1)
        z = self.encode(img, config.vae_batch_size)  # [N, C, h, w]
        total = int(round(config.refine_steps / 0.5))  # start half way down the schedule
        if total > self.scheduler.config.num_train_timesteps:
            raise ValueError(f"refine_steps {config.refine_steps} too many for the scheduler")
        self.scheduler.set_timesteps(total, device=self.device)
        timesteps = self.scheduler.timesteps[total // 2:]
        z = self.scheduler.add_noise(z, noise.to(z.dtype), timesteps[:1])
        k = config.refine_snippet_length
        start = cap_dilation(n, k, config.refine_start_dilation)
        for step, t in enumerate(tqdm(timesteps, desc="refine", leave=False, disable=not progress)):
            frac = step / max(len(timesteps) - 1, 1)
            dil = max(1, int(round(start + (1 - start) * frac)))  # coarse-to-fine: start dilation -> 1
            idx = snippet_indices(n, min(k, n), dil) or snippet_indices(n, min(k, n), 1)
            acc = torch.zeros_like(z, dtype=torch.float32)
            cnt = torch.zeros(n, device=z.device)
            for i in range(0, len(idx), config.batch_size):
                sel = torch.as_tensor(idx[i:i + config.batch_size], device=z.device)
                zs = z[sel]
                pred = self.unet_step(rgb_latent[sel], zs, t)
                new = self.scheduler.step(pred, t, zs).prev_sample
                acc.index_add_(0, sel.flatten(), new.flatten(0, 1).float())
                cnt.index_add_(0, sel.flatten(), torch.ones(sel.numel(), device=z.device))
            z = (acc / cnt.clamp(min=1)[:, None, None, None]).to(z.dtype)
        return self.decode(z, config.vae_batch_size).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def predict(self, frames: np.ndarray, config: RollingDepthConfig, progress: bool = True) -> PredictOutput:
        """Video depth of a segment: uint8 frames [N, H, W, 3] -> inverse depth [N, h, w] at processing size."""
        n = len(frames)
        if n == 0:
            raise ValueError("no frames to predict")
        images = self.frames_to_tensor(frames, config.processing_resolution)
        rgb_latent = self.encode(images, config.vae_batch_size)  # [N, C, h, w]
        gen = torch.Generator(device="cpu").manual_seed(config.seed)
        noise = torch.randn(rgb_latent.shape[1:], generator=gen).to(self.device, rgb_latent.dtype)
        noise = noise[None].expand(n, *noise.shape).contiguous()  # the same noise for every frame

        snippets: list[Snippet] = []
        used: list[int] = []
        for dil, k in zip(config.dilations, config.lengths_per_dilation()):
            k_eff = min(k, n)
            d = cap_dilation(n, k_eff, dil) if config.cap_dilation else dil
            idx = snippet_indices(n, k_eff, d)
            if not idx:
                log.info("dilation %d with snippets of %d frames does not fit %d frames: skipped", d, k_eff, n)
                continue
            if d in used and config.cap_dilation:
                continue  # capping made two dilations equal: the snippets would repeat
            used.append(d)
            snippets += self.predict_snippets(rgb_latent, idx, noise, config, desc=f"snippets d={d}", progress=progress)
        result = coalign(snippets, n, config.coalign)
        depth = result.depth
        if config.refine_steps > 0:
            depth = self.refine(rgb_latent, depth, noise, config, progress=progress)
        return PredictOutput(depth=depth.astype(np.float32), coaligned=result, snippets=snippets, dilations=tuple(used))


def load_pipeline(checkpoint, device=None, dtype: str = "fp16") -> RollingDepthPipeline:
    """Shorthand for :meth:`RollingDepthPipeline.from_checkpoint`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return RollingDepthPipeline.from_checkpoint(checkpoint, device=device, dtype=dtype)
