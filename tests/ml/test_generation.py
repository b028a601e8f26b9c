import torch

from ml.generation import SearchSettings, beam_search

from .conftest import open_rgb

BOS, EOS, PAD, UNK = 1, 2, 0, 3
A, B, C, D = 4, 5, 6, 7
VOCAB_SIZE = 8


class ScriptedDecoder:
    """A decoder whose next-word distribution depends only on the previous word."""

    def __init__(self, table: dict[int, dict[int, float]]):
        self.table = table

    def start(self, memory):
        return ()

    def step(self, memory, tokens, state):
        logits = torch.full((tokens.size(0), VOCAB_SIZE), -20.0)
        for row, previous in enumerate(tokens[:, -1].tolist()):
            for word, prob in self.table.get(previous, {}).items():
                logits[row, word] = torch.tensor(prob).log()
        return logits, state


def search(decoder, *, beam_size=3, max_length=5, num_captions=1, length_penalty=0.0,
           no_repeat=3, batch=1):
    settings = SearchSettings(beam_size, max_length, length_penalty, num_captions, no_repeat)
    return beam_search(decoder, torch.zeros(batch, 1, 4), settings=settings, bos_id=BOS,
                       eos_id=EOS, never_ids=(PAD, BOS, UNK))


def test_beam_finds_sequence_greedy_misses():
    """Greedy takes A (0.6) then a flat tail; beam search finds B then a sure end."""
    decoder = ScriptedDecoder({
        BOS: {A: 0.6, B: 0.4},
        A: {C: 0.34, D: 0.33, EOS: 0.33},
        B: {EOS: 0.99},
        C: {EOS: 1.0}, D: {EOS: 1.0},
    })
    greedy = search(decoder, beam_size=1)[0][0]
    beam = search(decoder, beam_size=3)[0][0]
    assert greedy.tokens == (A, C)
    assert beam.tokens == (B,)
    assert not beam.truncated


def test_unknown_and_special_tokens_are_never_output():
    decoder = ScriptedDecoder({BOS: {UNK: 0.7, PAD: 0.2, A: 0.1}, A: {UNK: 0.9, EOS: 0.1}})
    for candidate in search(decoder, num_captions=3)[0]:
        assert not set(candidate.tokens) & {PAD, BOS, UNK, EOS}


def test_unfinished_beam_is_returned_truncated():
    """When no beam reaches the end token, the best open one comes back marked truncated."""
    decoder = ScriptedDecoder({BOS: {A: 1.0}, A: {B: 1.0}, B: {C: 1.0}, C: {D: 1.0}, D: {A: 1.0}})
    best = search(decoder, max_length=3, no_repeat=0)[0][0]
    assert best.tokens == (A, B, C)
    assert best.truncated


def test_repeated_word_is_blocked():
    decoder = ScriptedDecoder({BOS: {A: 1.0}, A: {A: 0.9, EOS: 0.1}})
    best = search(decoder)[0][0]
    assert best.tokens == (A,)


def _has_repeated_trigram(tokens) -> bool:
    trigrams = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
    return len(trigrams) != len(set(trigrams))


def test_repeated_trigram_is_blocked():
    """A B A B A ... is what the decoder wants; the guard keeps every trigram unique."""
    decoder = ScriptedDecoder({BOS: {A: 1.0}, A: {B: 1.0}, B: {A: 0.95, EOS: 0.05}})
    unguarded = search(decoder, max_length=8, no_repeat=0, length_penalty=2.0, num_captions=3)[0]
    guarded = search(decoder, max_length=8, no_repeat=3, length_penalty=2.0, num_captions=3)[0]
    assert any(_has_repeated_trigram(c.tokens) for c in unguarded)
    assert not any(_has_repeated_trigram(c.tokens) for c in guarded)


def test_n_best_are_distinct_and_sorted_by_score():
    decoder = ScriptedDecoder({
        BOS: {A: 0.5, B: 0.3, C: 0.2},
        A: {EOS: 1.0}, B: {EOS: 1.0}, C: {EOS: 1.0},
    })
    candidates = search(decoder, num_captions=3)[0]
    assert [c.tokens for c in candidates] == [(A,), (B,), (C,)]
    assert candidates[0].score >= candidates[1].score >= candidates[2].score


def test_length_penalty_favours_longer_captions():
    decoder = ScriptedDecoder({
        BOS: {A: 0.9, B: 0.1},
        A: {EOS: 0.55, C: 0.45},
        B: {EOS: 1.0},
        C: {EOS: 1.0},
    })
    short = search(decoder, length_penalty=0.0)[0][0]
    long = search(decoder, length_penalty=3.0)[0][0]
    assert short.tokens == (A,)
    assert long.tokens == (A, C)


def test_batch_searches_images_independently():
    decoder = ScriptedDecoder({BOS: {A: 0.6, B: 0.4}, A: {EOS: 1.0}, B: {EOS: 1.0}})
    results = search(decoder, batch=4, num_captions=2)
    assert all([c.tokens for c in r] == [(A,), (B,)] for r in results)


def test_caption_is_identical_alone_or_in_a_batch(datasets, starter_captioner):
    """An image gets the same captions alone and among 8 different images."""
    names = sorted((datasets / "flickr8k-900/images").iterdir())[:4]
    names += sorted((datasets / "coco-mini/train2017").iterdir())[:4]
    images = [open_rgb(path) for path in names]
    batched = starter_captioner.caption(images, num_captions=2)
    for image, in_batch in zip(images, batched):
        alone = starter_captioner.caption([image], num_captions=2)[0]
        assert [h.text for h in alone] == [h.text for h in in_batch]


def test_starter_caption_reads_like_a_sentence(datasets, starter_captioner):
    image = open_rgb(datasets / "coco-mini/train2017/000000030752.jpg")
    hypotheses = starter_captioner.caption([image], num_captions=3)[0]
    assert len(hypotheses) == 3
    best = hypotheses[0]
    assert best.text[0].isupper()
    assert best.text.endswith(".")
    assert 3 <= len(best.text.split()) <= 20
    assert "<" not in best.text
    assert all(0.0 < h.confidence <= 1.0 for h in hypotheses)
    assert hypotheses[0].log_prob >= hypotheses[-1].log_prob - 5.0


def test_starter_captions_a_dog_as_a_dog(datasets, starter_captioner):
    """A held-out Flickr8k photo of a dog on grass gets a caption about a dog."""
    from ml.data import every_nth, read_captions_csv

    flickr = datasets / "flickr8k-900"
    held_out, _ = every_nth(read_captions_csv(flickr / "captions.csv", flickr / "images"),
                            every=10, offset=0)
    dogs = [item for item in held_out
            if sum("dog" in c.lower() for c in item.captions) >= 4][:5]
    assert dogs
    captions = [h[0].text.lower() for h in starter_captioner.caption([open_rgb(i.path) for i in dogs])]
    assert sum("dog" in c for c in captions) >= len(dogs) - 1, captions


def test_cut_caption_is_marked_truncated(datasets, starter_captioner):
    """Two words cannot describe the dinner-table photo, so its caption comes back cut."""
    image = open_rgb(datasets / "coco-mini/train2017/000000000790.jpg")
    best = starter_captioner.caption([image], max_length=2)[0][0]
    assert best.truncated
    assert len(best.text.rstrip("…").split()) == 2
    assert best.text.endswith("…")
