"""Person crops, the hourglass augmentation, heatmap rendering and decoding.

Coordinates: annotation files give 1-based pixel indices. Internally every point is *continuous*:
pixel i covers [i, i + 1), its centre is i + 0.5, so `u = a - 0.5`. torchvision's resize, rotate
(about the canvas centre w/2, h/2) and image resampling all use this frame; its keypoint flip uses
`W - 1 - x` (pixel-centre frame), so `flip_person` adds the one pixel back.

torchvision (transforms.v2.functional on tv_tensors.Image + tv_tensors.KeyPoints) does every
geometric step: resized_crop, rotate, center_crop, horizontal_flip. Hand-written here: the
left/right joint swap, the Gaussian heatmaps and their decoding (no library has them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from al_runner.tasks.pose.annotations import FLIP_PAIRS, NUM_JOINTS

ANNOTATION_TO_CONTINUOUS = -0.5  # u = a - 0.5 for 1-based pixel indices


@dataclass(frozen=True)
class CropSpec:
    """How the person box is derived from the annotation (the reimplementation's convention)."""

    pixels_per_scale: float = 200.0  # person box side = 200 * scale (MPII convention)
    center_shift: float = 15.0  # centre moved down by 15 * scale px ...
    scale_pad: float = 1.25  # ... and the box enlarged 1.25x "to avoid cropping limbs" (bearpaw/HRNet)

    def box(self, center: torch.Tensor, scale: float) -> tuple[float, float, float]:
        """(cx, cy, side) of the person box in continuous image coordinates."""
        cx, cy = (float(v) + ANNOTATION_TO_CONTINUOUS for v in center)
        return cx, cy + self.center_shift * scale, self.pixels_per_scale * scale * self.scale_pad


def clamped_gaussian(generator: torch.Generator, factor: float, clamp: float) -> float:
    """bearpaw/pytorch-pose's draw: factor * N(0, 1), clamped to [-clamp, clamp]."""
    return float((torch.randn((), generator=generator, dtype=torch.float64) * factor).clamp(-clamp, clamp))


def uniform(generator: torch.Generator, factor: float, clamp: float) -> float:
    """U(-factor, factor) (`clamp` unused): this runner's draw before it followed bearpaw."""
    return factor * (2 * float(torch.rand((), generator=generator, dtype=torch.float64)) - 1)


# How the scale and rotation offsets are drawn (task.augmentation.draw).
DRAWS = {"clamped_gaussian": clamped_gaussian, "uniform": uniform}


@dataclass(frozen=True)
class Augment:
    """One sample's augmentation draw (identity = eval)."""

    scale: float = 1.0
    rotation: float = 0.0  # degrees, counter-clockwise
    flip: bool = False
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @staticmethod
    def draw(
        generator: torch.Generator,
        draw: str,
        scale_factor: float,
        rotation_factor: float,
        rotation_prob: float,
        flip_prob: float,
        color_gain: float,
    ) -> "Augment":
        """bearpaw Mpii.__getitem__ with draw=clamped_gaussian: scale x clamp(1 + sf N(0,1), 1 - sf, 1 + sf);
        rotation clamp(rf N(0,1), -2 rf, 2 rf) degrees on `rotation_prob` of the samples; flip; each RGB
        channel x U(1 - gain, 1 + gain). Every number comes from `generator`, in a fixed order."""
        offset = DRAWS[draw]
        scale = 1.0 + offset(generator, scale_factor, scale_factor)
        rotation = offset(generator, rotation_factor, 2 * rotation_factor)
        u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        return Augment(
            scale=scale,
            rotation=rotation if u[0] < rotation_prob else 0.0,
            flip=u[1] < flip_prob,
            gains=tuple(1.0 + color_gain * (2 * g - 1) for g in u[2:5]),
        )


def square_crop_box(cx: float, cy: float, side: float) -> tuple[int, int, int]:
    """Integer (left, top, side) of the crop window: torchvision crops whole pixels."""
    side_px = max(1, round(side))
    return round(cx - side_px / 2), round(cy - side_px / 2), side_px


def crop_person(
    image: tv_tensors.Image, points: tv_tensors.KeyPoints, box: tuple[int, int, int], out: int, rotation: float = 0.0
) -> tuple[tv_tensors.Image, tv_tensors.KeyPoints]:
    """Crop the square `box` (zero padding outside the image), resize to out x out, rotate about its centre.

    With a rotation the window is cut 1.5x larger (>= sqrt 2) and centre-cropped after rotating, so the
    corners hold image content instead of fill, as the reimplementation's padded crop does.
    """
    left, top, side = box
    if rotation == 0.0:
        return F.resized_crop(image, top, left, side, side, [out, out], antialias=True), F.resized_crop(
            points, top, left, side, side, [out, out]
        )
    big_side = round(side * 1.5)
    big_out = round(out * big_side / side)
    big_left, big_top = left - (big_side - side) // 2, top - (big_side - side) // 2
    image = F.resized_crop(image, big_top, big_left, big_side, big_side, [big_out, big_out], antialias=True)
    points = F.resized_crop(points, big_top, big_left, big_side, big_side, [big_out, big_out])
    image, points = F.rotate(image, rotation), F.rotate(points, rotation)
    return F.center_crop(image, [out, out]), F.center_crop(points, [out, out])


def swap_left_right(values: torch.Tensor) -> torch.Tensor:
    """Swap MPII's left/right joints along dim -2 (points [.., 16, 2]) or dim -1 (flags [.., 16])."""
    order = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        order[a], order[b] = b, a
    dim = -2 if values.dim() >= 2 and values.shape[-1] == 2 and values.shape[-2] == NUM_JOINTS else -1
    return values.index_select(dim, torch.tensor(order, device=values.device))


def flip_person(image: tv_tensors.Image, points: tv_tensors.KeyPoints, flags: torch.Tensor):
    """Mirror image and joints, then swap left/right so "left wrist" stays the person's left wrist.
    `flags` [16] (or [F, 16]): per-joint flags that move with their joints."""
    width = points.canvas_size[1]
    flipped = F.horizontal_flip(points).as_subclass(torch.Tensor)
    flipped = flipped + torch.tensor([1.0, 0.0], dtype=flipped.dtype)  # W-1-x (pixel centres) -> W-x (continuous)
    flipped = tv_tensors.KeyPoints(swap_left_right(flipped), canvas_size=(points.canvas_size[0], width))
    return F.horizontal_flip(image), flipped, swap_left_right(flags)


def gaussian_in_heatmap(points: torch.Tensor, input_size: int, heatmap_size: int, sigma: float = 1.0) -> torch.Tensor:
    """[B, J] bool: the joint's +-3 sigma Gaussian window overlaps the heatmap. bearpaw's `draw_labelmap`
    returns vis = 0 (no target, weight 0) when it does not: a joint far outside the crop."""
    mu = points * (heatmap_size / input_size)
    return ((mu > -3 * sigma) & (mu < heatmap_size + 3 * sigma)).all(-1)


def render_heatmaps(
    points: torch.Tensor, annotated: torch.Tensor, input_size: int, heatmap_size: int, sigma: float = 1.0
) -> torch.Tensor:
    """[B, J, 2] input-scale continuous points -> [B, J, H, H] Gaussians (peak 1, sigma in heatmap px);
    zero maps for joints without coordinates.

    Hand-written (no library draws keypoint heatmaps). Differences from bearpaw's `draw_labelmap`, both
    small: the Gaussian is centred at the sub-pixel joint position (bearpaw rounds it to a heatmap pixel)
    and is not cut off at +-3 sigma (bearpaw pastes a 7x7 patch for sigma 1; the tail it drops is < 0.012)."""
    mu = points.float() * (heatmap_size / input_size)  # continuous heatmap coords
    centres = torch.arange(heatmap_size, dtype=torch.float32, device=points.device) + 0.5
    gx = torch.exp(-((centres - mu[..., 0:1]) ** 2) / (2 * sigma**2))  # [B, J, W]
    gy = torch.exp(-((centres - mu[..., 1:2]) ** 2) / (2 * sigma**2))  # [B, J, H]
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    return maps * annotated.to(maps.dtype)[..., None, None]


def decode_heatmaps(heatmaps: torch.Tensor, input_size: int) -> torch.Tensor:
    """[B, J, H, W] -> [B, J, 2] input-scale continuous points: argmax, then the usual quarter-pixel
    shift toward the higher neighbour (Newell et al. 2016; bearpaw `final_preds`)."""
    b, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, -1).argmax(-1)
    ky, kx = flat // w, flat % w
    padded = torch.nn.functional.pad(heatmaps, (1, 1, 1, 1), value=float("-inf"))
    bi = torch.arange(b, device=heatmaps.device)[:, None]
    ji = torch.arange(j, device=heatmaps.device)[None, :]
    right, left = padded[bi, ji, ky + 1, kx + 2], padded[bi, ji, ky + 1, kx]
    down, up = padded[bi, ji, ky + 2, kx + 1], padded[bi, ji, ky, kx + 1]
    # no shift at the border (a missing neighbour) or on a tie
    dx = torch.where(torch.isfinite(right) & torch.isfinite(left), torch.sign(right - left), torch.zeros_like(right))
    dy = torch.where(torch.isfinite(down) & torch.isfinite(up), torch.sign(down - up), torch.zeros_like(down))
    x = kx.float() + 0.5 + 0.25 * dx
    y = ky.float() + 0.5 + 0.25 * dy
    return torch.stack([x, y], -1) * (input_size / w)


def crop_to_image(points: torch.Tensor, boxes: torch.Tensor, input_size: int) -> torch.Tensor:
    """Input-scale continuous points [B, J, 2] -> annotation coordinates of the original image, given the
    eval crop boxes [B, 3] = (left, top, side) (no rotation or flip at eval)."""
    boxes = boxes.to(points.dtype)
    scale = boxes[:, 2:3, None] / input_size
    continuous = points * scale + boxes[:, None, 0:2]
    return continuous - ANNOTATION_TO_CONTINUOUS


def image_to_crop(points: torch.Tensor, boxes: torch.Tensor, input_size: int) -> torch.Tensor:
    """Inverse of `crop_to_image` (annotation coordinates -> input-scale continuous points)."""
    boxes = boxes.to(points.dtype)
    return (points + ANNOTATION_TO_CONTINUOUS - boxes[:, None, 0:2]) * input_size / boxes[:, 2:3, None]


def head_size_from_box(headboxes: torch.Tensor) -> torch.Tensor:
    """Official MPII evaluation: headSize = 0.6 * norm(headbox diagonal) (SC_BIAS = 0.6)."""
    return 0.6 * torch.linalg.vector_norm(headboxes[..., 2:4] - headboxes[..., 0:2], dim=-1)


def head_size_from_segment(joints: torch.Tensor) -> torch.Tensor:
    """MPII's PCKh definition (Andriluka et al. 2014): the head segment = upper neck (8) to head top (9)."""
    return torch.linalg.vector_norm(joints[..., 9, :] - joints[..., 8, :], dim=-1)


def headbox_for_segment(upper_neck, head_top) -> list[float]:
    """A square head box, centred on the head segment, whose 0.6 * diagonal equals the segment length:
    the generator writes it so both head-size conventions agree on generated data."""
    length = math.dist(upper_neck, head_top)
    half = length / (0.6 * math.sqrt(2)) / 2
    cx, cy = (upper_neck[0] + head_top[0]) / 2, (upper_neck[1] + head_top[1]) / 2
    return [cx - half, cy - half, cx + half, cy + half]
