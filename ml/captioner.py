"""Captioning of PIL images with a trained checkpoint: the entry point for services."""

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from .checkpoint import CheckpointError, load_checkpoint
from .encoder import preprocess
from .generation import SearchSettings
from .model import CaptionModel
from .vocab import Vocabulary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hypothesis:
    text: str  # the caption as a sentence, without special tokens
    log_prob: float  # sum of the token log-probabilities, the end token included
    confidence: float  # exp of the mean token log-probability, between 0 and 1
    truncated: bool  # True when max_length was reached before the end token


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); none on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class Captioner:
    def __init__(self, model: CaptionModel, vocab: Vocabulary, record: dict,
                 device: torch.device):
        self.model = model.eval().to(device)
        self.vocab = vocab
        self.config = model.config.to_dict()
        self.record = record
        self.device = device
        self._transform = preprocess(model.config.backbone, model.config.image_size)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str | None = None) -> "Captioner":
        """Load a checkpoint and its encoder; raise CheckpointError naming the file."""
        checkpoint = load_checkpoint(path)
        try:
            model = CaptionModel(checkpoint.config)
            model.load_trainable_state_dict(checkpoint.weights)
        except (KeyError, RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(path, f"the weights do not fit the config: {exc}") from exc
        target = torch.device(device) if device else default_device()
        logger.info("Loaded caption model %s (%s decoder, %d words) on %s",
                    os.fspath(path), checkpoint.config.decoder, len(checkpoint.vocab), target)
        return cls(model, checkpoint.vocab, checkpoint.record, target)

    def caption(self, images: Sequence[Image.Image], *, beam_size: int | None = None,
                max_length: int | None = None, num_captions: int = 1,
                length_penalty: float | None = None) -> list[list[Hypothesis]]:
        """Caption RGB images; return up to `num_captions` hypotheses per image, best first.

        Generation settings left as None take the defaults stored in the checkpoint.
        """
        config = self.model.config
        beam_size = config.beam_size if beam_size is None else beam_size
        max_length = config.max_caption_length if max_length is None else max_length
        if beam_size < 1 or num_captions < 1 or max_length < 1:
            raise ValueError(
                f"beam_size, num_captions and max_length must be at least 1, got "
                f"{beam_size}, {num_captions} and {max_length}"
            )
        if max_length > config.max_positions - 2:
            raise ValueError(f"max_length {max_length} exceeds this model's limit of "
                             f"{config.max_positions - 2} words")
        if not images:
            return []
        settings = SearchSettings(
            # Fewer beams than requested captions could not return them all.
            beam_size=max(beam_size, num_captions),
            max_length=max_length,
            length_penalty=config.length_penalty if length_penalty is None else length_penalty,
            num_captions=num_captions,
            no_repeat_ngram_size=config.no_repeat_ngram_size,
        )

        pixels = torch.stack([self._transform(image.convert("RGB")) for image in images])
        with torch.inference_mode(), autocast_for(self.device):
            features = self.model.encode(pixels.to(self.device))
            candidates = self.model.generate(
                features.float(), settings=settings, bos_id=self.vocab.bos_id,
                eos_id=self.vocab.eos_id,
                never_ids=(self.vocab.pad_id, self.vocab.bos_id, self.vocab.unk_id),
            )
        return [[self._to_hypothesis(c) for c in per_image] for per_image in candidates]

    def _to_hypothesis(self, candidate) -> Hypothesis:
        words = self.vocab.decode(candidate.tokens)
        steps = len(candidate.tokens) + (0 if candidate.truncated else 1)
        confidence = float(torch.tensor(candidate.log_prob / max(steps, 1)).exp())
        text = Vocabulary.to_sentence(words, truncated=candidate.truncated)
        return Hypothesis(text, candidate.log_prob, confidence, candidate.truncated)
