"""Light augmentation of image batches: a random shift, rotation and scale per image, on
whatever device the batch is on (one ``affine_grid`` + ``grid_sample``, no per-sample PIL)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# At strength 1: shifts up to 10% of the side (3 px of 28), rotations up to 15 degrees and
# scaling by 0.9-1.1, about what fast MNIST recipes use; the strength scales all three.
MAX_SHIFT = 0.10
MAX_DEGREES = 15.0
MAX_SCALE = 0.10


def random_affine(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W floats) with each image moved by its own random affine map drawn
    from ``generator`` (a CPU generator: the same draws on any device); strength 0 is ``x``."""
    if strength <= 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"augmentation needs image batches (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    draws = (torch.rand(x.shape[0], 4, generator=generator) * 2 - 1) * strength
    angle = draws[:, 0] * math.radians(MAX_DEGREES)
    scale = 1 + draws[:, 1] * MAX_SCALE
    # affine_grid works in [-1, 1] coordinates: a shift by a fraction f of the side is 2f.
    shift = draws[:, 2:] * 2 * MAX_SHIFT
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # "border": pixels brought in from outside repeat the edge (dark for MNIST, and no
    # black corners on an X-ray).
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
