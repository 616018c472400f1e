"""Light, CT-appropriate augmentation on preprocessed tensors (torch, batched).

Small rotations (+-10 deg), zoom (0.9-1.1), shifts (+-6 %), left-right flips and mild
brightness/contrast changes: what varies between scanners, reconstructions and the figure crops
of the UCSD set, without inventing anatomy. No elastic warps, no colour: CT is grey.
Work is done in the [0, 1] grey space of `Preprocessing` so padding is black (air), then the
same per-channel normalisation is re-applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Augmentation:
    rotate_deg: float = 10.0
    zoom: float = 0.1  # scale drawn from [1 - zoom, 1 + zoom]
    shift: float = 0.06  # fraction of the image size
    flip: float = 0.5  # probability of a left-right flip
    brightness: float = 0.08  # additive, in [0, 1] grey units
    contrast: float = 0.15  # multiplicative around the image mean
    gamma: float = 0.0  # grey ** exp(U(-gamma, gamma)): another window/level, another gamma
    noise: float = 0.0  # Gaussian noise, sigma drawn from [0, noise] grey units
    blur: float = 0.0  # Gaussian blur, sigma drawn from [0, blur] pixels (another kernel)
    jpeg: float = 0.0  # probability of a JPEG round trip at quality 30-95 (another encoder)
    local: float = 0.0  # probability of a local view: 1.5-2.5x zoom on a random part of the slice

    def __post_init__(self):
        for name in ("rotate_deg", "zoom", "shift", "flip", "brightness", "contrast", "gamma",
                     "noise", "blur", "jpeg", "local"):
            value = float(getattr(self, name))
            object.__setattr__(self, name, value)
            if value < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {value}")
        if self.flip > 1 or self.jpeg > 1 or self.local > 1 or self.zoom >= 1:
            raise ValueError("flip, jpeg and local must be probabilities and zoom < 1")

    @classmethod
    def none(cls) -> Augmentation:
        return cls(0, 0, 0, 0, 0, 0)

    @classmethod
    def cross_source(cls, jpeg: float = 0.0, local: float = 0.0) -> Augmentation:
        """Against the shortcuts that tell sources apart: crop and zoom (tight figure crops
        against full fields of view), window/gamma, scanner noise and reconstruction kernel;
        with `jpeg` > 0 also compression (SARS-CoV-2 slices are JPEG copies, DICOM never is);
        with `local` > 0 local views (part of one lung, as some figure crops and SARS-CoV-2
        slices show), so that the texture of a lesion, not the layout of a source, decides."""
        return cls(rotate_deg=10, zoom=0.2, shift=0.08, flip=0.5, brightness=0.08,
                   contrast=0.25, gamma=0.35, noise=0.03, blur=1.0, jpeg=jpeg, local=local)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def __call__(self, batch, mean, std, generator=None):
        """batch: float (N, 3, S, S) normalised input -> augmented batch, same shape/dtype."""
        import torch
        import torch.nn.functional as F

        n = batch.shape[0]
        dev = batch.device
        mean_t = torch.tensor(mean, device=dev, dtype=batch.dtype).view(1, 3, 1, 1)
        std_t = torch.tensor(std, device=dev, dtype=batch.dtype).view(1, 3, 1, 1)
        grey = batch * std_t + mean_t

        def uniform(low, high):
            return torch.rand(n, generator=generator, device="cpu").to(dev) * (high - low) + low

        angle = uniform(-self.rotate_deg, self.rotate_deg) * (math.pi / 180)
        scale = uniform(1 - self.zoom, 1 + self.zoom)
        tx, ty = uniform(-self.shift, self.shift) * 2, uniform(-self.shift, self.shift) * 2
        flip = torch.where(uniform(0, 1) < self.flip, -1.0, 1.0).to(dev)
        if self.local:
            # a 1.5-2.5x zoom whose window (1/scale of the slice) stays inside the slice: its
            # edge pixels sample at most the centres of the slice's edge pixels
            chosen = uniform(0, 1) < self.local
            near = uniform(1.5, 2.5)
            room = (1 - 1 / near) * (1 - 1 / grey.shape[-1])
            scale = torch.where(chosen, near, scale)
            tx = torch.where(chosen, uniform(-1, 1) * room, tx)
            ty = torch.where(chosen, uniform(-1, 1) * room, ty)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                             torch.stack([sin * flip, cos, ty], 1)], 1).to(batch.dtype)
        grid = F.affine_grid(theta, list(grey.shape), align_corners=False)
        grey = F.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        c = uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1).to(batch.dtype)
        b = uniform(-self.brightness, self.brightness).view(n, 1, 1, 1).to(batch.dtype)
        centre = grey.mean(dim=(1, 2, 3), keepdim=True)
        grey = ((grey - centre) * c + centre + b).clamp_(0.0, 1.0)
        if self.gamma:
            g = torch.exp(uniform(-self.gamma, self.gamma)).view(n, 1, 1, 1).to(batch.dtype)
            grey = grey.clamp(1e-6, 1.0) ** g
        if self.blur:
            grey = _blur(grey, uniform(0, self.blur))
        if self.noise:
            sigma = uniform(0, self.noise).view(n, 1, 1, 1).to(batch.dtype)
            noise = torch.randn(grey.shape[0], 1, *grey.shape[2:], generator=generator)
            grey = (grey + noise.to(dev, batch.dtype) * sigma).clamp_(0.0, 1.0)
        if self.jpeg:
            grey = _jpeg(grey, uniform(0, 1) < self.jpeg, uniform(30, 95))
        return (grey - mean_t) / std_t


def _jpeg(grey, chosen, quality):
    """A JPEG round trip (Pillow, 8-bit grey) of the chosen images at their drawn quality; the
    three channels hold the same grey image, so one is encoded and copied to all."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    out = grey.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        plane = (grey[i, 0].float().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="JPEG", quality=int(quality[i]))
        decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0
        out[i] = torch.from_numpy(decoded).to(grey.device, grey.dtype).expand_as(grey[i])
    return out


def _blur(grey, sigma):
    """Per-image Gaussian blur (sigma in pixels, one per image; ~0 leaves the image as is)."""
    import torch
    import torch.nn.functional as F

    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=grey.dtype, device=grey.device)
    s = sigma.to(grey.device, grey.dtype).clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-(x.view(1, -1) ** 2) / (2 * s**2))
    k = k / k.sum(dim=1, keepdim=True)  # (N, 2r+1)
    n, c, h, w = grey.shape
    flat = grey.reshape(1, n * c, h, w)
    kc = k.repeat_interleave(c, dim=0)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"),
                    kc.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"),
                    kc.view(n * c, 1, -1, 1), groups=n * c)
    return flat.reshape(n, c, h, w)
