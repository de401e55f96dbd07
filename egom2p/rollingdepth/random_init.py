"""Randomly initialised RollingDepth pipelines in the real directory layout (tests and cost checks).

``real``: the component configurations of the released checkpoint (Stable-Diffusion-2 class:
UNet 320/640/1280/1280 channels with 8 input channels, SD-2 VAE, OpenCLIP-H-sized text encoder,
DDIM v-prediction / trailing / zero-SNR scheduler), so a randomly initialised network has the real
cost. ``tiny``: the same structure with a few thousand parameters, for CPU tests.

The tokenizer is a CLIP BPE tokenizer over a tiny vocabulary built here (the pipeline only ever
encodes the empty prompt). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SIZES = ("tiny", "real")


def unet_config(size: str) -> dict:
    if size == "real":
        return dict(
            sample_size=96, in_channels=8, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32, flip_sin_to_cos=True,
            freq_shift=0, downsample_padding=1, act_fn="silu")
    return dict(
        sample_size=16, in_channels=8, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), attention_head_dim=(2, 4),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, use_linear_projection=True, norm_num_groups=8)


def vae_config(size: str) -> dict:
    if size == "real":
        return dict(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
            block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn="silu", scaling_factor=0.18215,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=32,
        block_out_channels=(8, 16), norm_num_groups=4, scaling_factor=0.18215,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
                timestep_spacing="trailing", rescale_betas_zero_snr=True)


def text_config(size: str, vocab_size: int) -> dict:
    if size == "real":
        return dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                    num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                    bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return dict(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu", projection_dim=16,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)


def write_tiny_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary (vocab.json + merges.txt) over a-z: enough to tokenise the empty prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += letters + [f"{c}</w>" for c in letters]
    vocab = {t: i for i, t in enumerate(tokens)}
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab))
    merges_path.write_text("#version: 0.2\n")
    return vocab_path, merges_path


def build_pipeline(size: str = "tiny", seed: int = 0, work_dir: Path | None = None):
    """A randomly initialised :class:`~egom2p.rollingdepth.pipeline.RollingDepthPipeline` (float32, CPU)."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .pipeline import RollingDepthPipeline

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        vocab, merges = write_tiny_clip_vocab(Path(tmp))
        tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    unet = UNet2DConditionModel(**unet_config(size))
    vae = AutoencoderKL(**vae_config(size))
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(size, len(tokenizer))))
    scheduler = DDIMScheduler(**scheduler_config())
    return RollingDepthPipeline(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)


def save_random_checkpoint(directory, size: str = "tiny", seed: int = 0) -> Path:
    """Write a randomly initialised pipeline in the released checkpoint's directory layout."""
    directory = Path(directory)
    pipe = build_pipeline(size, seed)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.unet.save_pretrained(directory / "unet", safe_serialization=True)
    pipe.vae.save_pretrained(directory / "vae", safe_serialization=True)
    pipe.scheduler.save_pretrained(directory / "scheduler")
    pipe.text_encoder.save_pretrained(directory / "text_encoder", safe_serialization=True)
    pipe.tokenizer.save_pretrained(directory / "tokenizer")
    write_tiny_clip_vocab(directory / "tokenizer")  # the release's vocab.json + merges.txt beside tokenizer.json
    index = {"_class_name": "RollingDepthPipeline", "_diffusers_version": "0.24.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory
