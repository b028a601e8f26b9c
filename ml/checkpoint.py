"""The checkpoint file: one safetensors file that loads without executing code.

Tensors are stored under `model.` (the trainable weights; the frozen encoder is
rebuilt from its own weights file) and, in checkpoints written for resuming,
`optimizer.`. The safetensors metadata carries JSON strings: the format name
and version, the model config, the vocabulary, the training record and, for
resuming, the training state.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .model import CaptionConfig
from .vocab import Vocabulary

FORMAT_NAME = "captionsite-caption-model"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt, foreign or of an unknown version."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Checkpoint:
    config: CaptionConfig
    vocab: Vocabulary
    record: dict  # where the data came from, epochs, seed, scores
    weights: dict[str, torch.Tensor]
    training_state: dict | None = None  # step, epoch, optimizer groups; None when exported
    optimizer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically (a temporary file, then a rename)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.weights.items()}
    tensors.update(
        {f"optimizer.{k}": v.detach().cpu().contiguous()
         for k, v in checkpoint.optimizer_tensors.items()}
    )
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(checkpoint.config.to_dict()),
        "vocab": json.dumps(checkpoint.vocab.words, ensure_ascii=False),
        "record": json.dumps(checkpoint.record),
    }
    if checkpoint.training_state is not None:
        metadata["training_state"] = json.dumps(checkpoint.training_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    # safetensors creates files readable by the owner only; apply the usual umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)
    os.replace(partial, path)


# First bytes of what torch.save writes: a zip archive holding a pickle, or a bare
# pickle (protocol 2 and later start with 0x80). Unpickling runs arbitrary code.
PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80")


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file starts with an 8-byte header length and then its JSON header.
    looks_like_safetensors = head[8:9] == b"{"
    if not looks_like_safetensors and head.startswith(PICKLE_SIGNATURES):
        raise CheckpointError(
            path, "refused: this is a pickle or torch.save file, and loading one can run "
                  "any code it contains; export the weights as a safetensors checkpoint "
                  "with ml.checkpoint.save_checkpoint"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            path, f"not a readable safetensors file ({exc}); the file is corrupt or of "
                  "another format"
        ) from exc
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(
            path, f"a safetensors file, but not a caption model checkpoint: its metadata "
                  f"'format' is {metadata.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise CheckpointError(
            path, f"checkpoint format version {version!r} is not supported; this code "
                  f"reads versions up to {FORMAT_VERSION}"
        )
    for key in ("config", "vocab", "record"):
        if key not in metadata:
            raise CheckpointError(path, f"the checkpoint metadata has no {key!r} entry")
    return metadata


def _parse_json(path: Path, metadata: dict[str, str], key: str):
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as exc:
        raise CheckpointError(path, f"the {key!r} metadata is not valid JSON ({exc})") from exc


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Return format version, config, record and vocabulary size without reading weights."""
    path = Path(path)
    metadata = _read_metadata(path)
    return {
        "format_version": int(metadata["format_version"]),
        "config": _parse_json(path, metadata, "config"),
        "record": _parse_json(path, metadata, "record"),
        "vocab_size": len(_parse_json(path, metadata, "vocab")),
    }


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint, checking that its config, vocabulary and weights agree."""
    path = Path(path)
    metadata = _read_metadata(path)
    try:
        config = CaptionConfig.from_dict(_parse_json(path, metadata, "config"))
        vocab = Vocabulary(_parse_json(path, metadata, "vocab"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid config or vocabulary: {exc}") from exc
    if len(vocab) != config.vocab_size:
        raise CheckpointError(
            path, f"the vocabulary has {len(vocab)} words but the config says {config.vocab_size}"
        )

    weights, optimizer_tensors = {}, {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                prefix, _, name = key.partition(".")
                target = weights if prefix == "model" else optimizer_tensors
                target[name] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"the tensors cannot be read ({exc}); the file is corrupt") from exc
    if not weights:
        raise CheckpointError(path, "the checkpoint contains no model weights")

    training_state = None
    if "training_state" in metadata:
        training_state = _parse_json(path, metadata, "training_state")
    return Checkpoint(config, vocab, _parse_json(path, metadata, "record"), weights,
                      training_state, optimizer_tensors)
