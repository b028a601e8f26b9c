"""Measure captioning speed of a checkpoint on real photos.

Prints model load time, then images per second and milliseconds per image for
greedy and beam search at several batch sizes, with ratios against batch size 1
and greedy decoding. Run it on an idle machine; shared machines are noisy.

    .venv/bin/python benchmarks/caption_speed.py --checkpoint checkpoints/starter.safetensors
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ml.captioner import Captioner  # noqa: E402

DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "datasets" / "flickr8k-900" / "images"


def measure(captioner, images, *, batch_size: int, beam_size: int, repeats: int) -> float:
    """Return the median seconds per image over `repeats` passes over `images`."""
    per_image = []
    captioner.caption(images[:batch_size], beam_size=beam_size)  # warm-up
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            captioner.caption(images[start:start + batch_size], beam_size=beam_size)
        per_image.append((time.perf_counter() - started) / len(images))
    return statistics.median(per_image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path,
                        default=REPO_ROOT / "checkpoints" / "starter.safetensors",
                        help="checkpoint to measure")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="directory of JPEG photos")
    parser.add_argument("--count", type=int, default=32, help="photos per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per setting; the median is printed")
    parser.add_argument("--device", help="torch device; default cuda when available, else cpu")
    args = parser.parse_args()

    paths = sorted(args.images.glob("*.jpg"))[:args.count]
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))

    started = time.perf_counter()
    captioner = Captioner.from_checkpoint(args.checkpoint, device=args.device)
    print(f"device {captioner.device}, torch threads {torch.get_num_threads()}, "
          f"{len(images)} photos, load {time.perf_counter() - started:.2f} s")
    tuned_beam = captioner.config["beam_size"]
    print(f"{'decoding':<10} {'batch':>5} {'img/s':>8} {'ms/img':>8} "
          f"{'vs batch 1':>11} {'vs greedy':>10}")
    greedy_seconds = {}
    for beam in (1, tuned_beam):
        label = "greedy" if beam == 1 else f"beam {beam}"
        single = None
        for batch in (1, 8, 32):
            seconds = measure(captioner, images, batch_size=batch, beam_size=beam,
                              repeats=args.repeats)
            single = single or seconds
            greedy_seconds.setdefault(batch, seconds)
            print(f"{label:<10} {batch:>5} {1 / seconds:>8.1f} {seconds * 1000:>8.1f} "
                  f"{single / seconds:>10.2f}x {greedy_seconds[batch] / seconds:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
