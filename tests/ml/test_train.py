"""Training end to end on coco-mini with a tiny decoder, so each run takes seconds."""

import subprocess
import sys

import pytest
import torch

from ml import train
from ml.captioner import Captioner
from ml.checkpoint import load_checkpoint

from .conftest import REPO_ROOT, open_rgb


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def run_training(datasets, output, cache, *extra):
    coco = datasets / "coco-mini"
    status = train.main([
        "--coco-json", str(coco / "captions_train2017.json"),
        "--coco-images", str(coco / "train2017"),
        "--views", "2", "--epochs", "2", "--batch-size", "32", "--min-count", "2",
        "--d-model", "64", "--layers", "1", "--heads", "2", "--ffn-dim", "128",
        "--warmup-steps", "4", "--device", "cpu",
        "--cache-dir", str(cache), "--logdir", str(output.parent / "runs"),
        "--output", str(output), *extra,
    ])
    assert status == 0


def assert_same_weights(first, second):
    assert first.weights.keys() == second.weights.keys()
    for key in first.weights:
        assert torch.equal(first.weights[key], second.weights[key]), key


def test_training_is_deterministic_for_a_seed(datasets, tmp_path, feature_cache):
    first, second = tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"
    run_training(datasets, first, feature_cache)
    run_training(datasets, second, feature_cache)
    assert_same_weights(load_checkpoint(first), load_checkpoint(second))


def test_resumed_training_matches_uninterrupted(datasets, tmp_path, feature_cache):
    straight = tmp_path / "a" / "model.safetensors"
    run_training(datasets, straight, feature_cache)

    interrupted = tmp_path / "b" / "model.safetensors"
    state = interrupted.with_name("model.resume.safetensors")
    run_training(datasets, interrupted, feature_cache, "--stop-after", "1")
    assert not interrupted.exists()
    assert load_checkpoint(state).training_state["epoch"] == 1

    run_training(datasets, interrupted, feature_cache, "--resume", str(state))
    assert_same_weights(load_checkpoint(straight), load_checkpoint(interrupted))


def test_checkpoint_carries_training_record(datasets, tmp_path, feature_cache):
    output = tmp_path / "model.safetensors"
    run_training(datasets, output, feature_cache)
    record = load_checkpoint(output).record
    assert record["epochs"] == 2
    assert record["seed"] == 0
    assert record["data"]["sources"][0]["images"] == 80
    assert [entry["epoch"] for entry in record["history"]] == [1, 2]


def test_lstm_decoder_trains_and_captions(datasets, tmp_path, feature_cache):
    """The same training and generation code drives the LSTM decoder."""
    output = tmp_path / "lstm.safetensors"
    run_training(datasets, output, feature_cache, "--decoder", "lstm")
    captioner = Captioner.from_checkpoint(output, device="cpu")
    assert captioner.config["decoder"] == "lstm"
    image = open_rgb(datasets / "coco-mini/train2017/000000000790.jpg")
    hypotheses = captioner.caption([image], beam_size=3, num_captions=2, max_length=8)[0]
    assert len(hypotheses) == 2
    assert all(h.text for h in hypotheses)


def test_tensorboard_events_are_written(datasets, tmp_path, feature_cache):
    output = tmp_path / "model.safetensors"
    run_training(datasets, output, feature_cache)
    assert list((tmp_path / "runs" / "model").glob("events.out.tfevents.*"))


def test_help_documents_every_flag():
    result = subprocess.run([sys.executable, "-m", "ml.train", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    for action in train.build_parser()._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in result.stdout


def test_missing_dataset_is_reported_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ml.train", "--captions-csv", str(tmp_path / "none.csv"),
         "--images", str(tmp_path), "--output", str(tmp_path / "m.safetensors")],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "none.csv" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_resume_file_is_reported_without_traceback(datasets, tmp_path):
    broken = tmp_path / "model.resume.safetensors"
    broken.write_bytes(b"\x00" * 64)
    coco = datasets / "coco-mini"
    result = subprocess.run(
        [sys.executable, "-m", "ml.train", "--coco-json", str(coco / "captions_train2017.json"),
         "--coco-images", str(coco / "train2017"), "--resume", str(broken),
         "--output", str(tmp_path / "model.safetensors")],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert str(broken) in result.stderr
    assert "Traceback" not in result.stderr
