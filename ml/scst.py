"""Self-critical sequence training: fine-tuning on the CIDEr-D of sampled captions.

Rennie et al., "Self-critical Sequence Training for Image Captioning" (CVPR 2017)
optimise the test metric directly with REINFORCE. Here the baseline of each sample
is the mean reward of the other samples of the same image (a leave-one-out
baseline), so no extra greedy decode is needed.

CIDEr-D (Vedantam et al., CVPR 2015) is computed here on word ids, with document
frequencies taken once from all training references rather than per batch.
"""

import math
from collections import Counter
from collections.abc import Sequence

import torch

NGRAM_SIZES = (1, 2, 3, 4)
SIGMA = 6.0  # length penalty width of CIDEr-D


def _ngrams(words: Sequence[int], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


class CiderD:
    """CIDEr-D with corpus document frequencies, scaled by 10 as pycocoevalcap does."""

    def __init__(self, references: Sequence[Sequence[Sequence[int]]]):
        self.log_images = math.log(len(references))
        self.document_frequency: Counter = Counter()
        for refs in references:
            seen = set()
            for ref in refs:
                for n in NGRAM_SIZES:
                    seen.update(_ngrams(ref, n))
            self.document_frequency.update(seen)
        self.references = [[self._vector(ref) for ref in refs] for refs in references]

    def _vector(self, words: Sequence[int]):
        vectors, norms = [], []
        for n in NGRAM_SIZES:
            counts = _ngrams(words, n)
            vec = {
                gram: count * (self.log_images - math.log(max(1.0, self.document_frequency[gram])))
                for gram, count in counts.items()
            }
            vectors.append(vec)
            norms.append(math.sqrt(sum(v * v for v in vec.values())))
        return vectors, norms, len(words)

    def score(self, image_index: int, words: Sequence[int]) -> float:
        vectors, norms, length = self._vector(words)
        total = 0.0
        for ref_vectors, ref_norms, ref_length in self.references[image_index]:
            penalty = math.exp(-((length - ref_length) ** 2) / (2 * SIGMA**2))
            for n in range(len(NGRAM_SIZES)):
                # CIDEr-D clips each hypothesis n-gram weight at the reference's.
                dot = sum(min(v, ref_vectors[n].get(g, 0.0)) * ref_vectors[n].get(g, 0.0)
                          for g, v in vectors[n].items())
                if norms[n] and ref_norms[n]:
                    total += penalty * dot / (norms[n] * ref_norms[n])
        return 10.0 * total / (len(NGRAM_SIZES) * len(self.references[image_index]))


@torch.no_grad()
def sample_captions(model, memory: torch.Tensor, *, samples: int, max_length: int, bos_id: int,
                    eos_id: int, never_ids: tuple[int, ...], generator: torch.Generator):
    """Draw `samples` captions per image from the model's distribution.

    Returns token ids (B*samples, T) starting with <bos> and padded after <eos>
    with `eos_id`, and a mask of the positions that count (words and the first <eos>).
    """
    memory = memory.repeat_interleave(samples, dim=0)
    state = model.decoder.start(memory)
    tokens = torch.full((memory.size(0), 1), bos_id, dtype=torch.long, device=memory.device)
    ended = torch.zeros(memory.size(0), dtype=torch.bool, device=memory.device)
    for t in range(max_length + 1):
        logits, state = model.decoder.step(memory, tokens, state)
        logits = logits.float()
        logits[:, list(never_ids)] = float("-inf")
        if t == 0:
            logits[:, eos_id] = float("-inf")
        if t == max_length:
            next_words = torch.full_like(ended, eos_id, dtype=torch.long)
        else:
            probs = logits.softmax(dim=-1).cpu()
            next_words = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(memory.device)
        next_words = torch.where(ended, torch.full_like(next_words, eos_id), next_words)
        tokens = torch.cat([tokens, next_words[:, None]], dim=1)
        ended |= next_words == eos_id
        if ended.all():
            break
    # A position counts up to and including the first end token.
    is_eos = tokens[:, 1:] == eos_id
    before_first_eos = (is_eos.cumsum(dim=1) - is_eos.long()) == 0
    return tokens, before_first_eos


def words_of(row: torch.Tensor, mask_row: torch.Tensor, eos_id: int) -> list[int]:
    return [w for w, keep in zip(row[1:].tolist(), mask_row.tolist()) if keep and w != eos_id]


def scst_loss(model, features: torch.Tensor, image_indices: list[int], cider: CiderD, *,
              samples: int, max_length: int, bos_id: int, eos_id: int,
              never_ids: tuple[int, ...], generator: torch.Generator):
    """Return the REINFORCE loss with a leave-one-out baseline, and the mean reward."""
    model.eval()
    tokens, mask = sample_captions(model, model.projection(features), samples=samples,
                                   max_length=max_length, bos_id=bos_id, eos_id=eos_id,
                                   never_ids=never_ids, generator=generator)
    rewards = torch.tensor([
        cider.score(image_indices[row // samples], words_of(tokens[row], mask[row], eos_id))
        for row in range(tokens.size(0))
    ], device=features.device).view(-1, samples)
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)
    advantage = (rewards - baseline).view(-1)

    model.train()
    logits = model(features.repeat_interleave(samples, dim=0), tokens[:, :-1])  # (B*S, T, V)
    log_probs = logits.float().log_softmax(dim=-1).gather(2, tokens[:, 1:, None]).squeeze(2)
    log_probs = (log_probs * mask).sum(dim=1)
    return -(advantage * log_probs).mean(), rewards.mean().item()
