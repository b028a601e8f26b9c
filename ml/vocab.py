"""Word vocabulary built from training captions and stored inside each checkpoint."""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# Words are runs of letters and digits, optionally joined by an apostrophe
# ("man's"). Punctuation carries no meaning for the metrics used here, which
# strip it before scoring.
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(caption: str) -> list[str]:
    """Split a caption into lower-case words, dropping punctuation."""
    return _WORD_RE.findall(caption.lower())


class Vocabulary:
    """A fixed mapping between words and ids, with the special tokens first."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a vocabulary must start with {SPECIAL_TOKENS}, got {tuple(words[:4])}"
            )
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a vocabulary must not contain the same word twice")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIAL_TOKENS))

    @classmethod
    def build(cls, captions: Iterable[str], *, min_count: int) -> "Vocabulary":
        """Keep the words seen at least `min_count` times, most frequent first."""
        counts = Counter(word for caption in captions for word in tokenize(caption))
        frequent = [w for w, n in counts.items() if n >= min_count and w not in SPECIAL_TOKENS]
        frequent.sort(key=lambda w: (-counts[w], w))
        return cls([*SPECIAL_TOKENS, *frequent])

    def __len__(self) -> int:
        return len(self.words)

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.bos_id, self.eos_id, self.unk_id)

    def encode(self, caption: str, *, max_length: int) -> list[int]:
        """Return `<bos> words... <eos>`, cut so that at most `max_length` words remain."""
        ids = [self.index.get(word, self.unk_id) for word in tokenize(caption)][:max_length]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Return the words for `ids`, skipping every special token."""
        special = set(self.special_ids)
        return [self.words[i] for i in ids if i not in special]

    @staticmethod
    def to_sentence(words: Sequence[str], *, truncated: bool = False) -> str:
        """Join words into a sentence with a capital letter and a full stop.

        A truncated caption ends with an ellipsis instead, so it does not read as finished.
        """
        if not words:
            return ""
        text = " ".join(words)
        return text[0].upper() + text[1:] + ("…" if truncated else ".")
