import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ml.checkpoint import (FORMAT_VERSION, Checkpoint, CheckpointError, load_checkpoint,
                           read_checkpoint_metadata, save_checkpoint)
from ml.model import CaptionConfig, CaptionModel
from ml.vocab import Vocabulary


@pytest.fixture
def small_checkpoint(tmp_path):
    vocab = Vocabulary.build(["a dog runs on grass", "a dog sits"], min_count=1)
    config = CaptionConfig(vocab_size=len(vocab), d_model=32, num_layers=1, num_heads=2, ffn_dim=64)
    model = CaptionModel(config, with_encoder=False)
    path = tmp_path / "small.safetensors"
    record = {"data": {"sources": ["unit test"]}, "epochs": 0, "scores": {}}
    save_checkpoint(path, Checkpoint(config, vocab, record, model.trainable_state_dict()))
    return path, model


def test_checkpoint_round_trips_config_vocab_record_and_weights(small_checkpoint):
    path, model = small_checkpoint
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.vocab.words[-1] == "sits"
    assert loaded.record["data"] == {"sources": ["unit test"]}
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(loaded.weights[key], value)


def test_metadata_is_read_without_weights(small_checkpoint):
    path, model = small_checkpoint
    metadata = read_checkpoint_metadata(path)
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["config"]["decoder"] == "transformer"
    assert metadata["vocab_size"] == model.config.vocab_size


def test_truncated_file_names_file_and_problem(small_checkpoint):
    path, _ = small_checkpoint
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


def test_pickle_file_is_rejected_unopened(tmp_path):
    """A pickle (what torch.save writes) is never unpickled: it is not safetensors."""
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="refused: this is a pickle"):
        load_checkpoint(path)


def test_torch_save_file_rejected_unopened(tmp_path):
    """A torch.save file whose pickle would create a file on load is refused untouched."""
    marker = tmp_path / "code-ran"

    class RunsCodeOnLoad:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2), "payload": RunsCodeOnLoad()}, path)
    with pytest.raises(CheckpointError, match="refused: this is a pickle"):
        read_checkpoint_metadata(path)
    assert not marker.exists()


def test_foreign_safetensors_file_is_rejected(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a caption model checkpoint"):
        read_checkpoint_metadata(path)


def test_newer_format_version_is_rejected(tmp_path, small_checkpoint):
    source, _ = small_checkpoint
    loaded = load_checkpoint(source)
    path = tmp_path / "future.safetensors"
    tensors = {f"model.{k}": v for k, v in loaded.weights.items()}
    save_file(tensors, str(path), metadata={"format": "captionsite-caption-model",
                                             "format_version": str(FORMAT_VERSION + 1)})
    with pytest.raises(CheckpointError, match="not supported"):
        load_checkpoint(path)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(CheckpointError, match="no such file") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


def test_weights_that_do_not_fit_config_are_rejected(tmp_path, small_checkpoint):
    from ml.captioner import Captioner

    source, _ = small_checkpoint
    loaded = load_checkpoint(source)
    loaded.weights.pop(next(iter(loaded.weights)))
    path = tmp_path / "partial.safetensors"
    save_checkpoint(path, loaded)
    with pytest.raises(CheckpointError, match="do not fit the config"):
        Captioner.from_checkpoint(path, device="cpu")
