"""The caption model: a frozen CNN grid encoder, a projection and a decoder."""

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .decoders import LSTMCaptionDecoder, TransformerCaptionDecoder
from .encoder import BACKBONES, GridEncoder
from .generation import Candidate, SearchSettings, beam_search


@dataclass
class CaptionConfig:
    vocab_size: int  # words in the vocabulary, special tokens included
    backbone: str = "efficientnet_lite0"  # or "resnet50"
    backbone_weights: str | None = None  # local weights file; None uses the packaged Lite0 file
    image_size: int = 224  # square input side in pixels; 224 gives a 7x7 grid
    decoder: str = "transformer"  # or "lstm"
    d_model: int = 256  # width of the projected grid and of the decoder
    num_layers: int = 2  # Transformer decoder layers (the LSTM decoder has one cell)
    num_heads: int = 4  # attention heads per Transformer layer
    ffn_dim: int = 1024  # hidden width of each Transformer feed-forward block
    dropout: float = 0.3  # on the projected grid, embeddings and decoder layers
    max_positions: int = 40  # size of the learned position table, tokens incl. <bos>
    # Generation defaults, tuned on a validation split and stored with the weights.
    beam_size: int = 3
    length_penalty: float = 0.6
    max_caption_length: int = 20  # words, the end token not counted
    no_repeat_ngram_size: int = 3  # blocks repeated trigrams; repeated words are always blocked

    @property
    def feature_dim(self) -> int:
        return BACKBONES[self.backbone].feature_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CaptionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)


class GridProjection(nn.Module):
    """Projects encoder cells to the decoder width, adds a position per cell and
    prepends one pooled cell that summarises the whole image."""

    def __init__(self, feature_dim: int, d_model: int, num_cells: int, dropout: float):
        super().__init__()
        self.cells = nn.Sequential(
            nn.LayerNorm(feature_dim), nn.Linear(feature_dim, d_model), nn.GELU()
        )
        self.pooled = nn.Sequential(
            nn.LayerNorm(feature_dim), nn.Linear(feature_dim, d_model), nn.GELU()
        )
        self.positions = nn.Parameter(torch.zeros(1, num_cells + 1, d_model))
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(features.mean(dim=1, keepdim=True))  # (B, 1, D)
        cells = self.cells(features)  # (B, N, D)
        memory = torch.cat([pooled, cells], dim=1) + self.positions  # (B, N+1, D)
        return self.dropout(self.norm(memory))


class CaptionModel(nn.Module):
    """Encoder, projection and decoder.

    The encoder is frozen and rebuilt from its own weights file, so it is
    optional: training from cached features builds the model without it, and
    `trainable_state_dict` leaves its weights out of checkpoints.
    """

    def __init__(self, config: CaptionConfig, *, with_encoder: bool = True):
        super().__init__()
        self.config = config
        self.encoder = GridEncoder(config.backbone, config.backbone_weights) if with_encoder else None
        num_cells = (config.image_size // 32) ** 2  # both backbones downsample 32x
        self.projection = GridProjection(config.feature_dim, config.d_model, num_cells,
                                         config.dropout)
        if config.decoder == "transformer":
            self.decoder = TransformerCaptionDecoder(
                vocab_size=config.vocab_size, d_model=config.d_model,
                num_layers=config.num_layers, num_heads=config.num_heads,
                ffn_dim=config.ffn_dim, dropout=config.dropout,
                max_positions=config.max_positions,
            )
        elif config.decoder == "lstm":
            self.decoder = LSTMCaptionDecoder(
                vocab_size=config.vocab_size, d_model=config.d_model, dropout=config.dropout,
            )
        else:
            raise ValueError(f"unknown decoder {config.decoder!r}; choose 'transformer' or 'lstm'")

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.trainable_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"weights do not match the config: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
        self.load_state_dict(state, strict=False)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise RuntimeError("this model was built without its encoder; pass features instead")
        return self.encoder(pixels)  # (B, 49, C)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Return next-word logits for every position of `tokens` (teacher forcing)."""
        return self.decoder(self.projection(features), tokens)

    @torch.inference_mode()
    def generate(self, features: torch.Tensor, *, settings: SearchSettings, bos_id: int,
                 eos_id: int, never_ids: tuple[int, ...]) -> list[list[Candidate]]:
        """Caption a batch of encoded images with beam search (greedy at beam size 1)."""
        memory = self.projection(features)
        return beam_search(self.decoder, memory, settings=settings, bos_id=bos_id,
                           eos_id=eos_id, never_ids=never_ids)
