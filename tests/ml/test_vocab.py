import pytest

from ml.vocab import SPECIAL_TOKENS, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A dog's ball , in the PARK .") == ["a", "dog's", "ball", "in", "the", "park"]


def test_build_keeps_frequent_words_after_special_tokens():
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.words == [*SPECIAL_TOKENS, "a", "dog"]


def test_encode_maps_rare_words_to_unknown_and_cuts():
    vocab = Vocabulary.build(["a dog runs", "a dog sits"], min_count=2)
    assert vocab.encode("a zebra dog a dog", max_length=3) == [
        vocab.bos_id, vocab.index["a"], vocab.unk_id, vocab.index["dog"], vocab.eos_id]


def test_decode_skips_special_tokens():
    vocab = Vocabulary.build(["a dog"], min_count=1)
    ids = [vocab.bos_id, vocab.index["a"], vocab.unk_id, vocab.index["dog"], vocab.eos_id, vocab.pad_id]
    assert vocab.decode(ids) == ["a", "dog"]


def test_to_sentence_capitalises_and_ends_with_full_stop():
    assert Vocabulary.to_sentence(["a", "dog", "runs"]) == "A dog runs."


def test_truncated_sentence_ends_with_ellipsis():
    assert Vocabulary.to_sentence(["a", "dog"], truncated=True) == "A dog…"


def test_vocabulary_without_special_tokens_is_rejected():
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "dog"])
