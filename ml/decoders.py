"""Caption decoders that attend over a grid of image features.

Both decoders share one interface, so training and generation drive them alike:

- `forward(memory, tokens)` returns logits for every position (teacher forcing);
- `start(memory)` returns the initial decoding state, a tuple of tensors whose
  first dimension is the batch;
- `step(memory, tokens, state)` takes all tokens generated so far and returns
  the logits of the next one and the new state.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, ...]


class TransformerCaptionDecoder(nn.Module):
    """A pre-norm Transformer decoder with cross-attention over the image grid
    (Vaswani et al., 2017), with output weights tied to the word embeddings."""

    def __init__(self, *, vocab_size: int, d_model: int, num_layers: int, num_heads: int,
                 ffn_dim: int, dropout: float, max_positions: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_positions, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(
            d_model, num_heads, ffn_dim, dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.layers = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.scale = math.sqrt(d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.size(1)
        positions = torch.arange(T, device=tokens.device)
        x = self.embed(tokens) * self.scale + self.positions(positions)  # (B, T, D)
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=tokens.device)
        x = self.layers(self.dropout(x), memory, tgt_mask=causal, tgt_is_causal=True)
        return self.norm(x) @ self.embed.weight.T  # (B, T, V)

    def start(self, memory: torch.Tensor) -> State:
        return ()

    def step(self, memory: torch.Tensor, tokens: torch.Tensor, state: State):
        # Without a key-value cache every step re-reads the prefix. Captions are
        # short (at most a few dozen tokens), so this costs little and keeps one
        # code path for training and generation.
        return self.forward(memory, tokens)[:, -1], state


class LSTMCaptionDecoder(nn.Module):
    """An LSTM decoder with additive (Bahdanau) attention and a gated context,
    as in Show, Attend and Tell (Xu et al., 2015)."""

    def __init__(self, *, vocab_size: int, d_model: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.init_h = nn.Linear(d_model, d_model)
        self.init_c = nn.Linear(d_model, d_model)
        self.attend_memory = nn.Linear(d_model, d_model)
        self.attend_hidden = nn.Linear(d_model, d_model)
        self.attend_score = nn.Linear(d_model, 1)
        self.gate = nn.Linear(d_model, d_model)
        self.cell = nn.LSTMCell(2 * d_model, d_model)
        self.out_hidden = nn.Linear(d_model, d_model)
        self.out_context = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)

    def start(self, memory: torch.Tensor) -> State:
        mean = memory.mean(dim=1)  # (B, D)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def _advance(self, memory, keys, token, state):
        h, c = state
        scores = self.attend_score(torch.tanh(keys + self.attend_hidden(h)[:, None]))  # (B, M, 1)
        weights = scores.softmax(dim=1)
        context = (weights * memory).sum(dim=1)  # (B, D)
        context = context * torch.sigmoid(self.gate(h))
        word = self.embed(token)  # (B, D)
        h, c = self.cell(torch.cat([word, context], dim=-1), (h, c))
        # Deep output layer: the word, the hidden state and the context all
        # feed the prediction (Xu et al., 2015, eq. 7).
        out = self.dropout(word + self.out_hidden(h) + self.out_context(context))
        return out @ self.embed.weight.T, (h, c)

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        keys = self.attend_memory(memory)
        state = self.start(memory)
        logits = []
        for t in range(tokens.size(1)):
            step_logits, state = self._advance(memory, keys, tokens[:, t], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)

    def step(self, memory: torch.Tensor, tokens: torch.Tensor, state: State):
        return self._advance(memory, self.attend_memory(memory), tokens[:, -1], state)
