"""Frozen-encoder features cached on disk, with augmented views of each image.

The encoder never trains, so its output for an image and a view never changes:
computing it once makes every epoch after the first cost only the decoder.
"""

import hashlib
import json
import logging
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms import v2 as transforms
from tqdm import tqdm

from .encoder import GridEncoder, file_sha256, lite0_weights_path, preprocess

logger = logging.getLogger(__name__)

# Views in a fixed order; `num_views` takes a prefix. The first is the plain
# image, as at inference. Crops keep 80 % of each side.
VIEW_NAMES = ("full", "flip", "crop_center", "crop_top_left", "crop_bottom_right",
              "flip_crop_center", "crop_top_right", "crop_bottom_left")


def _view(image: Image.Image, name: str) -> Image.Image:
    if name.startswith("flip"):
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if "crop" not in name:
        return image
    w, h = image.size
    cw, ch = round(w * 0.8), round(h * 0.8)
    left = {"center": (w - cw) // 2, "top_left": 0, "bottom_right": w - cw,
            "top_right": w - cw, "bottom_left": 0}
    top = {"center": (h - ch) // 2, "top_left": 0, "bottom_right": h - ch,
           "top_right": 0, "bottom_left": h - ch}
    where = name.split("crop_", 1)[1]
    return image.crop((left[where], top[where], left[where] + cw, top[where] + ch))


def _cache_key(paths: list[Path], backbone: str, weights: str | None, image_size: int,
               num_views: int) -> str:
    weights_path = Path(weights) if weights else lite0_weights_path()
    description = {
        "backbone": backbone,
        "weights_sha256": file_sha256(weights_path),
        "image_size": image_size,
        "views": VIEW_NAMES[:num_views],
        "images": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths],
    }
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:24]


@torch.inference_mode()
def extract_features(paths: list[Path], *, backbone: str, weights: str | None, image_size: int,
                     num_views: int, cache_dir: Path, device: torch.device,
                     batch_size: int = 32) -> torch.Tensor:
    """Return float16 features of shape (images, views, cells, channels), cached on disk."""
    if not 1 <= num_views <= len(VIEW_NAMES):
        raise ValueError(f"num_views must be between 1 and {len(VIEW_NAMES)}, got {num_views}")
    cache_path = cache_dir / f"{_cache_key(paths, backbone, weights, image_size, num_views)}.safetensors"
    if cache_path.is_file():
        logger.info("Using cached features %s", cache_path)
        return load_file(str(cache_path))["features"]

    logger.info("Extracting %s features of %d images x %d views into %s",
                backbone, len(paths), num_views, cache_path)
    encoder = GridEncoder(backbone, weights).to(device)
    transform = preprocess(backbone, image_size)
    jobs = [(i, view) for i in range(len(paths)) for view in VIEW_NAMES[:num_views]]
    features = None
    for start in tqdm(range(0, len(jobs), batch_size), desc="features", unit="batch"):
        batch = jobs[start:start + batch_size]
        images = {}
        for i, _ in batch:
            if i not in images:
                with Image.open(paths[i]) as image:
                    images[i] = image.convert("RGB")
        pixels = torch.stack([transform(_view(images[i], view)) for i, view in batch])
        grid = encoder(pixels.to(device)).half().cpu()  # (batch, cells, C)
        if features is None:
            features = torch.empty(len(paths), num_views, *grid.shape[1:], dtype=torch.float16)
        for (i, view), cells in zip(batch, grid):
            features[i, VIEW_NAMES.index(view)] = cells

    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_path.with_name(cache_path.name + ".partial")
    save_file({"features": features}, str(partial))
    partial.replace(cache_path)
    return features
