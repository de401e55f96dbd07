"""Perceptual metrics through their real networks, read from a local weights directory.

Nothing is downloaded: the user places the published files in one directory (``--weights DIR``,
default ``$EGOM2P_WEIGHTS`` or ``~/.cache/egom2p/weights``):

``DIR/lpips/``
    * ``alex.pth`` (or ``vgg.pth``): the LPIPS v0.1 linear heads from richzhang/PerceptualSimilarity
      (``weights/v0.1/alex.pth``; keys ``lin{k}.model.1.weight`` of shape [1, C_k, 1, 1]);
    * ``alexnet-owt-7be5be79.pth`` (or ``vgg16-397923af.pth``): the ImageNet backbone as published by
      torchvision (keys ``features.{i}.weight/bias``; the classifier keys are ignored).

``DIR/fvd/i3d_torchscript.pt``
    The I3D TorchScript of StyleGAN-V / fvd-comparison (Kinetics-400). Called as
    ``detector(videos, rescale=False, resize=False, return_features=True)`` on float videos
    [B, 3, T, 224, 224] in [-1, 1]; returns features [B, F] (F = 400 logits before softmax).

The LPIPS networks are written here in torch (torchvision's models are not usable with this torch);
the layer layout matches torchvision's so the published state dicts load unchanged. Every file is
read with ``torch.load(weights_only=True)`` or ``torch.jit.load`` (TorchScript, no pickle of code).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import EgoM2PError
from .metrics import feature_stats, frechet_distance

LPIPS_FILES = {
    "alex": ("alex.pth", ("alexnet-owt-7be5be79.pth", "alexnet.pth")),
    "vgg": ("vgg.pth", ("vgg16-397923af.pth", "vgg16.pth")),
}
I3D_FILE = "i3d_torchscript.pt"
I3D_SIZE = 224


class WeightsNotFoundError(EgoM2PError, FileNotFoundError):
    """A perceptual network's weights are missing; the message names the directory and the files expected."""


def default_weights_dir() -> Path:
    return Path(os.environ.get("EGOM2P_WEIGHTS", Path.home() / ".cache" / "egom2p" / "weights"))


# --- LPIPS --------------------------------------------------------------------------------------

_ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # relu1 .. relu5 of torchvision's AlexNet
_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # relu1_2 .. relu5_3 of VGG16


def alexnet_features(width: float = 1.0) -> nn.Sequential:
    """torchvision's AlexNet ``features`` (same indices, so its state dict loads); ``width`` scales channels (tests)."""
    c = [max(1, int(round(k * width))) for k in (64, 192, 384, 256, 256)]
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
    )


def vgg16_features(width: float = 1.0) -> nn.Sequential:
    """torchvision's VGG16 ``features`` (same indices); ``width`` scales channels (tests)."""
    layers, cin = [], 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = max(1, int(round(v * width)))
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin = cout
    return nn.Sequential(*layers)


class _Lin(nn.Module):
    """LPIPS linear head: dropout (inactive at eval) + 1x1 conv without bias; keys ``model.1.weight``."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al. 2018), v0.1, linear-calibrated.

    forward(a, b): images [N, 3, H, W] in [-1, 1] -> distances [N].
    """

    def __init__(self, net: str = "alex", width: float = 1.0):
        super().__init__()
        if net not in LPIPS_FILES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(LPIPS_FILES)}, got {net!r}")
        self.net_name = net
        self.features = alexnet_features(width) if net == "alex" else vgg16_features(width)
        self.slices = _ALEX_SLICES if net == "alex" else _VGG_SLICES
        chans = [self._out_channels(a, b) for a, b in self.slices]
        for k, c in enumerate(chans):
            setattr(self, f"lin{k}", _Lin(c))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def _out_channels(self, a: int, b: int) -> int:
        convs = [m for m in list(self.features)[:b] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def _taps(self, x):
        feats = []
        for a, b in self.slices:
            for i in range(a, b):
                x = self.features[i](x)
            feats.append(x)
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self._taps((a - self.shift) / self.scale)
        fb = self._taps((b - self.shift) / self.scale)
        total = 0.0
        for k, (x, y) in enumerate(zip(fa, fb)):
            x = x / (torch.sqrt((x ** 2).sum(1, keepdim=True)) + 1e-10)
            y = y / (torch.sqrt((y ** 2).sum(1, keepdim=True)) + 1e-10)
            d = getattr(self, f"lin{k}")((x - y) ** 2)  # [N, 1, h, w]
            total = total + d.mean(dim=(2, 3))
        return total[:, 0]


def _find(directory: Path, names) -> Path | None:
    for n in names:
        p = directory / n
        if p.is_file():
            return p
    return None


def _load_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable torch state dict ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def load_lpips(weights_dir=None, net: str = "alex", device="cpu") -> LPIPS:
    """The LPIPS network with its published weights from ``weights_dir/lpips/`` (see module docstring).

    The channel widths are taken from the files, so a reduced network saved in the same layout (the
    tests) loads too.
    """
    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    d = root / "lpips"
    if net not in LPIPS_FILES:
        raise ValueError(f"LPIPS backbone must be one of {sorted(LPIPS_FILES)}, got {net!r}")
    head_name, backbone_names = LPIPS_FILES[net]
    head = _find(d, (head_name,))
    backbone = _find(d, backbone_names)
    if head is None or backbone is None:
        missing = ([head_name] if head is None else []) + ([" or ".join(backbone_names)] if backbone is None else [])
        raise WeightsNotFoundError(
            f"LPIPS ({net}) weights not found in {d}: expected {head_name} (LPIPS v0.1 linear heads, "
            f"richzhang/PerceptualSimilarity weights/v0.1/{head_name}) and {backbone_names[0]} (torchvision "
            f"ImageNet backbone); missing: {', '.join(missing)}. Pass --weights DIR or set EGOM2P_WEIGHTS.")
    bsd = {k[len("features."):]: v for k, v in _load_state(backbone).items() if k.startswith("features.")}
    hsd = _load_state(head)
    first = bsd.get("0.weight")
    if first is None:
        raise ValueError(f"{backbone}: no features.0.weight; not a torchvision {net} backbone")
    full = 64
    width = first.shape[0] / full
    model = LPIPS(net, width=width)
    try:
        model.features.load_state_dict(bsd)
        model.load_state_dict({**{f"features.{k}": v for k, v in bsd.items()}, **hsd,
                               "shift": model.shift, "scale": model.scale})
    except RuntimeError as e:
        raise ValueError(f"LPIPS weights in {d} do not match the {net} architecture: {str(e)[:300]}") from e
    return model.eval().to(device)


@torch.no_grad()
def lpips_video(model: LPIPS, est: np.ndarray, ref: np.ndarray, batch: int = 16) -> float:
    """Mean LPIPS over frames of uint8 videos [..., H, W, 3]."""
    a = np.asarray(est).reshape(-1, *np.asarray(est).shape[-3:])
    b = np.asarray(ref).reshape(-1, *np.asarray(ref).shape[-3:])
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}")
    dev = model.shift.device
    vals = []
    for i in range(0, len(a), batch):
        x = torch.from_numpy(a[i:i + batch]).to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = torch.from_numpy(b[i:i + batch]).to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1
        vals.append(model(x, y).cpu())
    return float(torch.cat(vals).mean())


# --- FVD ----------------------------------------------------------------------------------------


def load_i3d(weights_dir=None, device="cpu"):
    """The I3D TorchScript detector from ``weights_dir/fvd/i3d_torchscript.pt``."""
    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = root / "fvd" / I3D_FILE
    if not path.is_file():
        raise WeightsNotFoundError(
            f"FVD network not found: expected {path} (the I3D TorchScript of StyleGAN-V / fvd-comparison, "
            f"'i3d_torchscript.pt'). Pass --weights DIR or set EGOM2P_WEIGHTS.")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise ValueError(f"{path}: not a loadable TorchScript module ({type(e).__name__}: {str(e)[:200]})") from e


def preprocess_i3d(videos: np.ndarray, size: int = I3D_SIZE) -> torch.Tensor:
    """uint8 videos [B, T, H, W, 3] -> float [B, 3, T, size, size] in [-1, 1] (bilinear resize, fvd-comparison)."""
    v = torch.from_numpy(np.ascontiguousarray(videos)).float() / 255.0  # [B, T, H, W, 3]
    B, T, H, W, _ = v.shape
    x = v.permute(0, 1, 4, 2, 3).reshape(B * T, 3, H, W)
    if (H, W) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.reshape(B, T, 3, size, size).permute(0, 2, 1, 3, 4)
    return x * 2 - 1


@torch.no_grad()
def i3d_features(detector, videos: np.ndarray, batch: int = 8, device="cpu") -> np.ndarray:
    """I3D features [B, F] of uint8 videos [B, T, H, W, 3]."""
    out = []
    for i in range(0, len(videos), batch):
        x = preprocess_i3d(videos[i:i + batch]).to(device)
        f = detector(x, rescale=False, resize=False, return_features=True)
        out.append(f.detach().float().cpu().numpy())
    return np.concatenate(out, 0)


def fvd(detector, est_videos: np.ndarray, ref_videos: np.ndarray, device="cpu") -> float:
    """Fréchet Video Distance between two sets of uint8 videos [B, T, H, W, 3] (B >= 2 each)."""
    fa = i3d_features(detector, est_videos, device=device)
    fb = i3d_features(detector, ref_videos, device=device)
    return frechet_distance(*feature_stats(fa), *feature_stats(fb))
