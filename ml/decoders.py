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


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention over the grid, MLP."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm_self = nn.LayerNorm(d_model)
        self.self_qkv = nn.Linear(d_model, 3 * d_model)
        self.self_out = nn.Linear(d_model, d_model)
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_q = nn.Linear(d_model, d_model)
        self.cross_kv = nn.Linear(d_model, 2 * d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2)  # (B, H, T, C/H)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        B, H, T, D = x.shape
        return x.transpose(1, 2).reshape(B, T, H * D)  # (B, T, C)

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.cross_kv(memory).chunk(2, dim=-1)
        return self._heads(keys), self._heads(values)  # (B, H, M, C/H) each

    def forward(self, x, memory_kv, past_kv=None):
        """Run the block on `x` (B, T, C). With `past_kv`, `x` holds only new positions
        and attends to the cached keys and values of the earlier ones."""
        q, k, v = self.self_qkv(self.norm_self(x)).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)
            v = torch.cat([past_kv[1], v], dim=2)
        p = self.dropout.p if self.training else 0.0
        # New positions only look back, so a causal mask is needed only when
        # several positions are computed at once.
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=past_kv is None)
        x = x + self.dropout(self.self_out(self._merge(attended)))

        q = self._heads(self.cross_q(self.norm_cross(x)))
        attended = F.scaled_dot_product_attention(q, *memory_kv, dropout_p=p)
        x = x + self.dropout(self.cross_out(self._merge(attended)))
        x = x + self.dropout(self.mlp(self.norm_mlp(x)))
        return x, (k, v)


class TransformerCaptionDecoder(nn.Module):
    """A pre-norm Transformer decoder with cross-attention over the image grid
    (Vaswani et al., 2017), with output weights tied to the word embeddings.

    Generation caches the keys and values of earlier positions and of the grid,
    so each step costs one position rather than the whole prefix.
    """

    def __init__(self, *, vocab_size: int, d_model: int, num_layers: int, num_heads: int,
                 ffn_dim: int, dropout: float, max_positions: int):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_positions, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.scale = math.sqrt(d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.positions.weight, std=0.02)

    def _embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        positions = torch.arange(offset, offset + tokens.size(1), device=tokens.device)
        return self.dropout(self.embed(tokens) * self.scale + self.positions(positions))

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self._embed(tokens, 0)  # (B, T, D)
        for block in self.blocks:
            x, _ = block(x, block.memory_keys_values(memory))
        return self.norm(x) @ self.embed.weight.T  # (B, T, V)

    def start(self, memory: torch.Tensor) -> State:
        # Per block: grid keys, grid values, then the (empty) self-attention cache.
        state = []
        for block in self.blocks:
            keys, values = block.memory_keys_values(memory)
            empty = keys[:, :, :0]  # (B, H, 0, C/H)
            state += [keys, values, empty, empty]
        return tuple(state)

    def step(self, memory: torch.Tensor, tokens: torch.Tensor, state: State):
        x = self._embed(tokens[:, -1:], tokens.size(1) - 1)  # (B, 1, D)
        new_state = []
        for i, block in enumerate(self.blocks):
            keys, values, past_k, past_v = state[4 * i:4 * i + 4]
            x, (past_k, past_v) = block(x, (keys, values), (past_k, past_v))
            new_state += [keys, values, past_k, past_v]
        return (self.norm(x) @ self.embed.weight.T)[:, -1], tuple(new_state)


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
