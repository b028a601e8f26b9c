"""Caption datasets: Flickr8k-style CSV (`image,caption`) and COCO captions JSON."""

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


class DatasetError(Exception):
    """A caption file is missing, malformed or names images that do not exist."""


@dataclass(frozen=True)
class CaptionedImage:
    path: Path
    captions: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name


def _check_images_exist(items: list[CaptionedImage], source: Path) -> None:
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        raise DatasetError(
            f"{source}: {len(missing)} listed images are missing, for example {missing[0]}; "
            "check the images directory"
        )


def read_captions_csv(csv_path: str | Path, images_dir: str | Path) -> list[CaptionedImage]:
    """Read a CSV with the header `image,caption`, one row per caption, sorted by image name."""
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    grouped: dict[str, list[str]] = defaultdict(list)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
                raise DatasetError(
                    f"{csv_path}: expected the header 'image,caption', got {reader.fieldnames}"
                )
            for row in reader:
                if row["image"] and row["caption"] and row["caption"].strip():
                    grouped[row["image"]].append(row["caption"].strip())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read the captions file ({exc})") from exc
    items = [CaptionedImage(images_dir / name, tuple(caps)) for name, caps in sorted(grouped.items())]
    _check_images_exist(items, csv_path)
    return items


def read_coco_json(json_path: str | Path, images_dir: str | Path) -> list[CaptionedImage]:
    """Read a COCO captions file (`images` and `annotations`), sorted by file name."""
    json_path, images_dir = Path(json_path), Path(images_dir)
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        files = {image["id"]: image["file_name"] for image in data["images"]}
        grouped: dict[str, list[str]] = defaultdict(list)
        for annotation in data["annotations"]:
            grouped[files[annotation["image_id"]]].append(annotation["caption"].strip())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{json_path}: cannot read the COCO captions file ({exc})") from exc
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            f"{json_path}: not in the COCO captions format (missing or wrong {exc}); "
            "expected 'images' with 'id' and 'file_name' and 'annotations' with "
            "'image_id' and 'caption'"
        ) from exc
    items = [CaptionedImage(images_dir / name, tuple(caps)) for name, caps in sorted(grouped.items())]
    _check_images_exist(items, json_path)
    return items


def every_nth(items: list[CaptionedImage], *, every: int, offset: int
              ) -> tuple[list[CaptionedImage], list[CaptionedImage]]:
    """Split sorted items into those at positions `offset`, `offset + every`, ... and the rest.

    A split by position in name order is stable across machines and runs, so a
    held-out split stays held out when the data is read again.
    """
    if every < 2 or not 0 <= offset < every:
        raise ValueError(f"need every >= 2 and 0 <= offset < every, got {every} and {offset}")
    chosen = [item for i, item in enumerate(items) if i % every == offset]
    rest = [item for i, item in enumerate(items) if i % every != offset]
    return chosen, rest
