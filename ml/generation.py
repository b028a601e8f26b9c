"""Beam search over a batch of images, for any decoder with the `step` interface.

A beam size of 1 is greedy decoding: the same code path picks the single most
probable word at every step.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Candidate:
    """One generated caption as word ids (no special tokens)."""

    tokens: tuple[int, ...]
    log_prob: float  # sum of the log-probabilities of the words and the end token
    score: float  # log_prob divided by the length penalty; candidates rank by it
    truncated: bool  # True when max_length was reached before the end token


@dataclass(frozen=True)
class SearchSettings:
    beam_size: int
    max_length: int  # maximum number of words, the end token not counted
    length_penalty: float  # alpha of the GNMT penalty; 0 ranks by raw log-probability
    num_captions: int
    no_repeat_ngram_size: int  # 0 disables the guard


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ((5 + length) / 6) ** alpha


def _banned_next_words(history: list[int], n: int) -> set[int]:
    """Words that would repeat the previous word or an n-gram already produced."""
    banned = {history[-1]} if history else set()
    if n > 1 and len(history) >= n - 1:
        prefix = tuple(history[len(history) - (n - 1):])
        for start in range(len(history) - n + 1):
            if tuple(history[start:start + n - 1]) == prefix:
                banned.add(history[start + n - 1])
    return banned


def beam_search(decoder, memory: torch.Tensor, *, settings: SearchSettings, bos_id: int,
                eos_id: int, never_ids: tuple[int, ...]) -> list[list[Candidate]]:
    """Return up to `num_captions` candidates per image, best first.

    `never_ids` (padding, start and unknown tokens) are never produced. When no
    beam of an image reaches the end token within `max_length` words, its best
    unfinished beams are returned with `truncated=True`.
    """
    B, K = memory.size(0), settings.beam_size
    device = memory.device
    memory = memory.repeat_interleave(K, dim=0)  # (B*K, M, D)
    state = decoder.start(memory)
    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)

    # Only the first beam of each image is live at the start, so the K beams do
    # not begin as K copies of the same prefix.
    beam_log_probs = torch.full((B, K), float("-inf"), device=device)
    beam_log_probs[:, 0] = 0.0
    histories: list[list[int]] = [[] for _ in range(B * K)]
    finished: list[list[Candidate]] = [[] for _ in range(B)]
    done = [False] * B

    for t in range(settings.max_length + 1):
        logits, state = decoder.step(memory, tokens, state)
        log_probs = logits.float().log_softmax(dim=-1)  # (B*K, V)
        log_probs[:, list(never_ids)] = float("-inf")
        if t == 0:
            log_probs[:, eos_id] = float("-inf")  # no empty caption
        if settings.no_repeat_ngram_size:
            for row, history in enumerate(histories):
                for word in _banned_next_words(history, settings.no_repeat_ngram_size):
                    log_probs[row, word] = float("-inf")

        V = log_probs.size(-1)
        totals = (beam_log_probs.view(-1, 1) + log_probs).view(B, K * V)
        top_values, top_indices = totals.topk(2 * K, dim=-1)
        top_values, top_indices = top_values.tolist(), top_indices.tolist()

        # Pick K live continuations per image; end tokens among the best go to
        # the finished list instead.
        next_rows, next_words, next_log_probs = [], [], []
        for b in range(B):
            chosen = 0
            for value, index in zip(top_values[b], top_indices[b]):
                if value == float("-inf") or chosen == K:
                    break
                row, word = b * K + index // V, index % V
                if word == eos_id:
                    if not done[b]:
                        words = tuple(histories[row])
                        score = value / length_penalty(len(words) + 1, settings.length_penalty)
                        finished[b].append(Candidate(words, value, score, truncated=False))
                    continue
                next_rows.append(row)
                next_words.append(word)
                next_log_probs.append(value)
                chosen += 1
            while chosen < K:  # fewer live continuations than beams
                next_rows.append(b * K)
                next_words.append(eos_id)
                next_log_probs.append(float("-inf"))
                chosen += 1
            if not done[b]:
                done[b] = _search_is_over(finished[b], next_log_probs[-K:], settings)

        # After max_length words only an end token may finish a beam; the beams
        # still open stay as they are and count as truncated.
        if t == settings.max_length:
            break
        rows = torch.tensor(next_rows, device=device)
        beam_log_probs = torch.tensor(next_log_probs, device=device).view(B, K)
        beam_log_probs[torch.tensor(done, device=device)] = float("-inf")
        tokens = torch.cat([tokens[rows], torch.tensor(next_words, device=device)[:, None]], dim=1)
        state = tuple(s.index_select(0, rows) for s in state)
        histories = [histories[r] + [w] for r, w in zip(next_rows, next_words)]
        if all(done) or torch.isinf(beam_log_probs).all():
            break

    open_log_probs = beam_log_probs.masked_fill(torch.tensor(done, device=device)[:, None],
                                                float("-inf"))
    return [
        _best_candidates(finished[b], histories[b * K:(b + 1) * K],
                         open_log_probs[b].tolist(), settings)
        for b in range(B)
    ]


def _search_is_over(finished: list[Candidate], live_log_probs: list[float],
                    settings: SearchSettings) -> bool:
    """True when no live beam can still outscore the n-th best finished caption.

    Log-probabilities only fall as words are added, so a live beam's best
    possible score is its current log-probability under the largest length
    penalty it could still reach (or under none, when the penalty is zero).
    """
    if len(finished) < settings.num_captions:
        return False
    best_live = max(live_log_probs)
    if best_live == float("-inf"):
        return True
    if settings.length_penalty > 0:
        best_live /= length_penalty(settings.max_length + 1, settings.length_penalty)
    nth_best = sorted((c.score for c in finished), reverse=True)[settings.num_captions - 1]
    return nth_best >= best_live


def _best_candidates(finished, histories, log_probs, settings: SearchSettings) -> list[Candidate]:
    ranked = sorted(finished, key=lambda c: c.score, reverse=True)
    if len(ranked) < settings.num_captions:
        unfinished = [
            Candidate(tuple(h), lp, lp / length_penalty(len(h), settings.length_penalty), True)
            for h, lp in zip(histories, log_probs)
            if lp != float("-inf")
        ]
        ranked += sorted(unfinished, key=lambda c: c.score, reverse=True)
    # Different beams can reach the same words; keep the better copy only.
    unique, seen = [], set()
    for candidate in ranked:
        if candidate.tokens not in seen:
            seen.add(candidate.tokens)
            unique.append(candidate)
    return unique[: settings.num_captions]
