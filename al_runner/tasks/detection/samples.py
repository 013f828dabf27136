"""Per-batch decoding and SSD augmentation of VOC images (torchvision.transforms.v2 with tv_tensors boxes).

Training augmentation is SSD's recipe as in torchvision's detection references ("ssd" preset):
photometric distortion, zoom-out (filled with the mean pixel), IoU crop, horizontal flip, then resize to
the network size and drop degenerate boxes. Scoring and evaluation resize only.

Two implementations of that recipe (`augmentation.pipeline`): `reference` is torchvision's v2 Compose as
the detection references build it; `fast` (default) draws the same random numbers in the same order and
moves the boxes with the same torchvision kernels (so boxes and labels are identical to the reference's
for the same seed), but builds the pixels more cheaply: it never materialises the zoomed-out canvas
(only the part of the image inside the crop is resized to its place in the 300x300 output) and applies
the photometric distortion after that resize, to at most 300x300 pixels. What differs from the
reference is pixel-level only: interpolation at the image/fill border (<= 1 output pixel), the order of
resize and colour operations, and the contrast's grey mean taken from a thumbnail of the whole image.

v2 transforms draw from torch's *global* RNG. To keep reruns identical with any number of DataLoader
workers, the main process draws one seed per sample from the loop's generator, and each sample is
augmented inside `torch.random.fork_rng` seeded with it (the caller's RNG state is left untouched).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from al_runner.errors import ConfigError, DataError
from al_runner.tasks import loading
from al_runner.tasks.detection.voc_data import VOCSplit

MEAN_PIXEL = (123, 117, 104)  # zoom-out fill: the ImageNet mean pixel, as torchvision's SSD preset


def ssd_train_transform(image_size: int, zoom_out_max: float = 4.0, hflip: float = 0.5, pipeline: str = "fast"):
    """SSD's training augmentation, `fast` (default) or torchvision's `reference` Compose: same draws, same boxes."""
    if pipeline not in PIPELINES:
        raise ConfigError(
            f"task.build.augmentation.pipeline={pipeline} not supported, choose from {', '.join(PIPELINES)}"
        )
    return PIPELINES[pipeline](image_size, zoom_out_max, hflip)


def reference_ssd_transform(image_size: int, zoom_out_max: float = 4.0, hflip: float = 0.5) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: MEAN_PIXEL, "others": 0}, side_range=(1.0, zoom_out_max)),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=hflip),
            v2.Resize((image_size, image_size), antialias=True),
            v2.SanitizeBoundingBoxes(min_size=1.0),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class FastSSDAugment:
    """SSD's training augmentation: the reference's random draws and box kernels, cheaper pixels (module doc).

    Called like the reference Compose: (image uint8 [3, H, W], {"boxes", "labels"}) -> (float image in [0, 1]
    [3, S, S], {"boxes" in S x S pixels, "labels"}) with degenerate boxes dropped.
    """

    def __init__(self, image_size: int, zoom_out_max: float = 4.0, hflip: float = 0.5):
        self.size = int(image_size)
        # the reference's own transforms: their parameters (ranges, p, fill) and their make_params draws
        self.photometric = v2.RandomPhotometricDistort(p=0.5)
        self.zoom_out = v2.RandomZoomOut(
            fill={tv_tensors.Image: MEAN_PIXEL, "others": 0}, side_range=(1.0, zoom_out_max)
        )
        self.iou_crop = v2.RandomIoUCrop()
        self.hflip = hflip
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=1.0)

    def __call__(self, image: torch.Tensor, target: dict):
        boxes, labels = target["boxes"], target["labels"]
        # the draws of the reference, in its order: photometric, zoom-out (apply? then size and place), IoU crop, flip
        colour = self.photometric.make_params([image])
        padding = self.zoom_out.make_params([image])["padding"] if torch.rand(1) < self.zoom_out.p else [0, 0, 0, 0]
        if any(padding):
            boxes = TF.pad(boxes, padding=padding)
        crop = iou_crop_params(self.iou_crop, *boxes.canvas_size, boxes)
        if crop:
            boxes = TF.crop(boxes, top=crop["top"], left=crop["left"], height=crop["height"], width=crop["width"])
            boxes[~crop["is_within_crop_area"]] = 0  # as RandomIoUCrop marks them, for SanitizeBoundingBoxes
        flip = bool(torch.rand(1) < self.hflip)
        if flip:
            boxes = TF.horizontal_flip(boxes)
        boxes = TF.resize(boxes, [self.size, self.size])
        pixels = self._pixels(image, padding, crop, flip, colour)
        pixels, target = self.sanitize(tv_tensors.Image(pixels), {"boxes": boxes, "labels": labels})
        return TF.to_dtype(pixels, torch.float32, scale=True), target

    def _pixels(self, image: torch.Tensor, padding: list[int], crop: dict, flip: bool, colour: dict) -> torch.Tensor:
        """The S x S output: the image's part inside the crop window, resized to where it lands, distorted;
        the rest is the zoom-out fill (the mean pixel, undistorted, as in the reference)."""
        height, width = image.shape[-2:]
        left, top = padding[0], padding[1]
        window = (
            (crop["left"], crop["top"], crop["width"], crop["height"])
            if crop
            else (0, 0, width + padding[0] + padding[2], height + padding[1] + padding[3])
        )
        source, placed = image_in_window(width, height, left, top, window, self.size)
        out = torch.tensor(MEAN_PIXEL, dtype=torch.uint8).view(3, 1, 1).repeat(1, self.size, self.size)
        if source is not None:
            (x0, y0, x1, y1), (a0, b0, a1, b1) = source, placed
            tile = TF.resize(image[:, y0:y1, x0:x1].as_subclass(torch.Tensor), [b1 - b0, a1 - a0], antialias=True)
            out[:, b0:b1, a0:a1] = photometric(tile, colour, contrast_mean(image, colour))
        return out.flip(-1) if flip else out


def image_in_window(width: int, height: int, left: int, top: int, window: tuple[int, int, int, int], size: int):
    """Where the image (at left, top of the zoom-out canvas) shows through the crop window, resized to size x size:
    (its pixels x0, y0, x1, y1 in the image, its place a0, b0, a1, b1 in the output), or (None, None)."""
    wx, wy, ww, wh = window
    x0, x1 = max(wx, left), min(wx + ww, left + width)
    y0, y1 = max(wy, top), min(wy + wh, top + height)
    a0, a1 = round((x0 - wx) * size / ww), round((x1 - wx) * size / ww)
    b0, b1 = round((y0 - wy) * size / wh), round((y1 - wy) * size / wh)
    if x1 <= x0 or y1 <= y0 or a1 <= a0 or b1 <= b0:
        return None, None
    return (x0 - left, y0 - top, x1 - left, y1 - top), (a0, b0, a1, b1)


def iou_crop_params(crop: v2.RandomIoUCrop, height: int, width: int, boxes: torch.Tensor) -> dict:
    """`RandomIoUCrop.make_params` on a height x width canvas: the same draws from torch's RNG in the same order,
    the same float32 arithmetic and tests, hence the same crop (tested against torchvision's). Hand-written
    because torchvision's search makes two RNG calls and about ten small tensors per trial, and an image
    takes ~50 trials (up to 40 per IoU option): 2-3 ms per image. Here one option's trials read one block
    of uniform draws, and the RNG is then advanced by exactly the draws the trials used."""
    xyxy = (
        TF.convert_bounding_box_format(
            boxes.as_subclass(torch.Tensor), old_format=boxes.format, new_format=tv_tensors.BoundingBoxFormat.XYXY
        )
        .numpy()
        .astype(np.float32)
    )
    while True:
        min_iou = crop.options[int(torch.randint(low=0, high=len(crop.options), size=(1,)))]
        if min_iou >= 1.0:  # "leave as is"
            return {}
        found = _iou_crop_trials(crop, height, width, xyxy, min_iou)
        if found:
            return found


def _iou_crop_trials(crop: v2.RandomIoUCrop, height: int, width: int, xyxy: np.ndarray, min_iou: float) -> dict:
    """Up to `crop.trials` trials of one IoU option (RandomIoUCrop.make_params's inner loop): the trials' windows
    from one block of draws, then their box tests at once; the first window that passes is the reference's."""
    f32 = np.float32
    state = torch.default_generator.get_state()
    u = torch.rand(4 * crop.trials).numpy()  # a trial draws 2 (scale) or 4 (scale, position) uniforms
    scale = f32(crop.min_scale) + f32(crop.max_scale - crop.min_scale) * u  # float32, as torchvision's tensor ops
    new_ws, new_hs = (f32(width) * scale).astype(np.int64).tolist(), (f32(height) * scale).astype(np.int64).tolist()
    windows, ends, used = [], [], 0  # (left, top, right, bottom) of each trial that draws a position; draws used so far
    for _ in range(crop.trials):
        new_w, new_h = new_ws[used], new_hs[used + 1]
        if not crop.min_aspect_ratio <= new_w / new_h <= crop.max_aspect_ratio:
            used += 2
            continue
        left, top = int(f32(width - new_w) * u[used + 2]), int(f32(height - new_h) * u[used + 3])
        used += 4
        if new_w > 0 and new_h > 0:  # torchvision skips zero-area windows
            windows.append((left, top, left + new_w, top + new_h))
            ends.append(used)
    passed = _windows_passing(np.array(windows, dtype=np.int64).reshape(-1, 4), xyxy, min_iou)
    first = int(np.argmax(passed)) if passed.any() else None
    torch.default_generator.set_state(state)
    torch.rand(ends[first] if first is not None else used)  # the draws the reference made, no more
    if first is None:
        return {}
    left, top, right, bottom = windows[first]
    within = _centres_within(np.array(windows[first : first + 1]), xyxy)[0]
    return dict(
        top=top, left=left, height=bottom - top, width=right - left, is_within_crop_area=torch.from_numpy(within)
    )


def _centres_within(windows: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """[W, N]: box i's centre strictly inside window w (torchvision compares float32 centres with int edges)."""
    cx, cy = np.float32(0.5) * (xyxy[:, 0] + xyxy[:, 2]), np.float32(0.5) * (xyxy[:, 1] + xyxy[:, 3])
    w = windows.astype(np.float32)[:, :, None]
    return (w[:, 0] < cx) & (cx < w[:, 2]) & (w[:, 1] < cy) & (cy < w[:, 3])


def _windows_passing(windows: np.ndarray, xyxy: np.ndarray, min_iou: float) -> np.ndarray:
    """[W] bool: some box centred inside the window has IoU >= min_iou with it (torchvision.ops.box_iou, float32)."""
    f32 = np.float32
    within = _centres_within(windows, xyxy)
    w = windows.astype(f32)[:, None, :]
    b = xyxy[None]
    wx = np.clip(np.minimum(b[..., 2], w[..., 2]) - np.maximum(b[..., 0], w[..., 0]), 0, None)
    wy = np.clip(np.minimum(b[..., 3], w[..., 3]) - np.maximum(b[..., 1], w[..., 1]), 0, None)
    inter = wx * wy
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iou = inter / (area + (w[..., 2] - w[..., 0]) * (w[..., 3] - w[..., 1]) - inter)
    return (within & (iou >= f32(min_iou))).any(axis=1)


def contrast_mean(image: torch.Tensor, colour: dict) -> torch.Tensor | None:
    """The grey mean the reference's contrast step blends towards: that of the whole image after the colour steps
    before it, here from a thumbnail (about 1/8 of each side; the mean of an antialiased resize is the mean)."""
    if colour["contrast_factor"] is None:
        return None
    height, width = image.shape[-2:]
    scale = min(1.0, 64 / max(height, width))
    thumb = TF.resize(
        image.as_subclass(torch.Tensor), [max(1, round(height * scale)), max(1, round(width * scale))], antialias=True
    )
    steps = ["brightness"] if colour["contrast_before"] else ["brightness", "saturation", "hue"]
    return grey_mean(photometric(thumb, colour, None, steps))


def grey_mean(image: torch.Tensor) -> torch.Tensor:
    """As torchvision's adjust_contrast computes it for uint8: floor of the luma, then the mean."""
    r, g, b = image.unbind(-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().mean()


def photometric(
    image: torch.Tensor,
    colour: dict,
    mean: torch.Tensor | None,
    steps=("brightness", "contrast", "saturation", "hue", "contrast_after", "permute"),
) -> torch.Tensor:
    """RandomPhotometricDistort.transform with its drawn `colour` parameters, on a uint8 image; the contrast step
    blends towards `mean` (see contrast_mean) instead of this image's own mean, hue is `adjust_hue_uint8`."""
    for name in steps:
        image = PHOTOMETRIC_STEPS[name](image, colour, mean)
    return image


def _contrast(image, colour, mean, before: bool):
    factor = colour["contrast_factor"]
    if factor is None or colour["contrast_before"] != before:
        return image
    # torchvision's _blend for uint8: blend, clamp, truncate
    return image.mul(float(factor)).add_(mean, alpha=1.0 - float(factor)).clamp_(0, 255).to(torch.uint8)


def _drawn(key: str, adjust):
    """A colour step that applies `adjust(image, value)` when RandomPhotometricDistort drew a value for `key`."""
    return lambda image, colour, _mean: image if colour[key] is None else adjust(image, colour[key])


PHOTOMETRIC_STEPS = {  # in RandomPhotometricDistort.transform's order (contrast before or after saturation + hue)
    "brightness": _drawn("brightness_factor", TF.adjust_brightness),
    "contrast": lambda image, colour, mean: _contrast(image, colour, mean, before=True),
    "saturation": _drawn("saturation_factor", TF.adjust_saturation),
    "hue": _drawn("hue_factor", lambda image, factor: adjust_hue_uint8(image, factor)),
    "contrast_after": lambda image, colour, mean: _contrast(image, colour, mean, before=False),
    "permute": _drawn("channel_permutation", TF.permute_channels),
}


def adjust_hue_uint8(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """torchvision's adjust_hue for uint8 [3, H, W] (the HSV hue shift; max and min channel are kept, so only the
    hue is recomputed): at most 1 level from torchvision's, on < 0.01 % of pixels. Hand-written because
    torchvision's goes through a full HSV round trip with an index gather, about 2x slower on 300x300."""
    x = image.to(torch.float32).mul_(1.0 / 255)
    r, g, b = x.unbind(-3)
    high, low = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    chroma = high - low
    safe = torch.where(chroma == 0, 1.0, chroma)
    sector = torch.where(high == r, (g - b) / safe, torch.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = sector.mul_(1.0 / 6.0).add_(1.0)
    hue = hue - hue.floor()  # torchvision: fmod(h / 6 + 1, 1)
    hue = hue.add_(hue_factor)
    hue = (hue - hue.floor()).mul_(6.0)  # shifted hue mod 1, in sixths of the circle
    k = torch.stack([hue + 5.0, hue + 3.0, hue + 1.0], dim=-3)
    k = k - torch.floor(k / 6.0) * 6.0
    rgb = high.unsqueeze(-3) - chroma.unsqueeze(-3) * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return rgb.mul_(255 + 1.0 - 1e-3).to(torch.uint8)  # torchvision's float -> uint8 conversion


PIPELINES = {"fast": FastSSDAugment, "reference": reference_ssd_transform}


def eval_transform(image_size: int) -> v2.Compose:
    return v2.Compose([v2.Resize((image_size, image_size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


class VOCSamples(Dataset):
    """Item (index, seed): seed None = eval transform. `with_targets=False` never reads an annotation."""

    def __init__(self, split: VOCSplit, image_size: int, train_transform: v2.Compose | None, with_targets: bool):
        self.split, self.with_targets = split, with_targets
        self.train_transform, self.eval_transform = train_transform, eval_transform(image_size)

    def __len__(self) -> int:
        return len(self.split)

    def __getstate__(self) -> dict:
        """Without its persistent loader: what a worker started by spawn (not fork) is sent."""
        return {k: v for k, v in vars(self).items() if k != loading.LOADERS_ATTRIBUTE}

    def __getitem__(self, item: tuple[int, int | None]):
        index, seed = item
        image = self._decode(index)
        if not self.with_targets:
            return self.eval_transform(image), None, index
        if seed is None:
            return (*self._eval_sample(image, index), index)
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues a lazy seeding of every CUDA/XPU/MTIA device,
            # with a formatted stack trace each time (1.3 ms per image where CUDA is not initialised: workers)
            torch.default_generator.manual_seed(seed)
            return (*self._train_sample(image, index), index)

    def _decode(self, index: int) -> tv_tensors.Image:
        path = self.split.images[index]
        try:  # PIL, as torchvision's VOCDetection (torchvision.io decoding is deprecated since 0.29)
            with Image.open(path) as pil:
                image = TF.pil_to_tensor(pil.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise DataError(f"cannot decode image {path}: {error}") from None
        if self.with_targets:
            a = self.split.annotations[index]
            if tuple(image.shape[-2:]) != (a.height, a.width):
                raise DataError(
                    f"{path} is {image.shape[-1]}x{image.shape[-2]} but its XML "
                    f"{self.split.annotation_files[index]} says {a.width}x{a.height}"
                )
        return tv_tensors.Image(image)

    def _boxes(self, index: int, image: torch.Tensor, keep: torch.Tensor) -> tv_tensors.BoundingBoxes:
        boxes = self.split.annotations[index].boxes[keep]
        return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:]))

    def _train_sample(self, image, index):
        """Difficult objects are not training targets (as in the VOC devkit / SSD)."""
        a = self.split.annotations[index]
        keep = ~a.difficult
        image, target = self.train_transform(
            image, {"boxes": self._boxes(index, image, keep), "labels": a.labels[keep]}
        )
        return image.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
        }

    def _eval_sample(self, image, index):
        """Boxes/labels = the non-difficult objects (the loss target); difficult ones kept for the metric."""
        a = self.split.annotations[index]
        image, boxes = self.eval_transform(image, self._boxes(index, image, torch.ones_like(a.difficult)))
        boxes = boxes.as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), {
            "boxes": boxes[~a.difficult],
            "labels": a.labels[~a.difficult],
            "difficult_boxes": boxes[a.difficult],
            "difficult_labels": a.labels[a.difficult],
        }


def collate(samples):
    images, targets, indices = zip(*samples)
    return torch.stack(images), list(targets), torch.tensor(indices, dtype=torch.int64)


def batches(
    dataset: VOCSamples, items: list[tuple[int, int | None]], batch_size: int, num_workers: int, pin_memory: bool
) -> Iterator[tuple[torch.Tensor, list, torch.Tensor]]:
    """(images [B, 3, S, S] float in [0, 1], targets or Nones, indices), in the order of `items`.

    The dataset's DataLoader workers persist across passes (`al_runner.tasks.loading`): one start per
    dataset, not one per epoch."""
    chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    yield from loading.persistent_batches(dataset, "batches", dataset, chunks, num_workers, pin_memory, collate)
