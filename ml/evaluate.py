"""Score a checkpoint's captions against reference captions.

The last line of standard output is one JSON object with the keys bleu1..bleu4,
meteor, rouge_l, cider and images, so scripts can read it with `tail -n 1`.
"""

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .captioner import Captioner
from .checkpoint import CheckpointError
from .data import DatasetError, every_nth, read_captions_csv, read_coco_json
from .metrics import java_available, score_captions

logger = logging.getLogger("ml.evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.evaluate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to evaluate")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--captions-csv", type=Path, help="Flickr8k-style CSV with the header image,caption")
    source.add_argument("--coco-json", type=Path, help="COCO captions JSON")
    parser.add_argument("--images", type=Path, required=True, help="directory of the images")
    parser.add_argument("--select-every", type=int, default=0,
                        help="score only every N-th image sorted by name (the split held out "
                             "with ml.train --exclude-every N); 0 scores all images")
    parser.add_argument("--select-offset", type=int, default=0,
                        help="position within each group of N of the scored image")
    parser.add_argument("--limit", type=int, default=0, help="score at most this many images; 0 for all")
    parser.add_argument("--beam-size", type=int, help="beam size; default: the checkpoint's")
    parser.add_argument("--length-penalty", type=float, help="length penalty; default: the checkpoint's")
    parser.add_argument("--max-length", type=int, help="maximum words; default: the checkpoint's")
    parser.add_argument("--batch-size", type=int, default=16, help="images captioned together")
    parser.add_argument("--samples", type=Path,
                        help="write a CSV of image, generated caption and references here")
    parser.add_argument("--device", help="torch device; default cuda when available, else cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.captions_csv:
            items = read_captions_csv(args.captions_csv, args.images)
        else:
            items = read_coco_json(args.coco_json, args.images)
        if args.select_every:
            items, _ = every_nth(items, every=args.select_every, offset=args.select_offset)
        captioner = Captioner.from_checkpoint(args.checkpoint, device=args.device)
    except (DatasetError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        items = items[:args.limit]
    if not items:
        print("error: no images to evaluate", file=sys.stderr)
        return 2

    predictions = {}
    for start in tqdm(range(0, len(items), args.batch_size), desc="captioning", unit="batch"):
        batch = items[start:start + args.batch_size]
        images = []
        for item in batch:
            with Image.open(item.path) as image:
                images.append(image.convert("RGB"))
        results = captioner.caption(images, beam_size=args.beam_size,
                                    length_penalty=args.length_penalty, max_length=args.max_length)
        for item, hypotheses in zip(batch, results):
            predictions[item.name] = hypotheses[0].text

    references = {item.name: list(item.captions) for item in items}
    if not java_available():
        print("METEOR skipped: it needs Java and no 'java' is on PATH", file=sys.stderr)
    scores = score_captions(predictions, references)
    scores["images"] = len(items)

    if args.samples:
        args.samples.parent.mkdir(parents=True, exist_ok=True)
        with open(args.samples, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "caption", "references"])
            for item in items:
                writer.writerow([item.name, predictions[item.name], " | ".join(item.captions)])
        logger.info("Wrote sample captions to %s", args.samples)
    print(json.dumps({key: (round(v, 4) if isinstance(v, float) else v)
                      for key, v in scores.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
