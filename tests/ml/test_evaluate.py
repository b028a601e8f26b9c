import json
import os
import subprocess
import sys

from .conftest import REPO_ROOT, STARTER_CHECKPOINT

SCORE_KEYS = {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "images"}


def run_evaluate(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ml.evaluate", "--checkpoint",
                           str(STARTER_CHECKPOINT), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env)


def test_evaluate_prints_scores_as_last_line(datasets, tmp_path):
    samples = tmp_path / "samples.csv"
    result = run_evaluate("--coco-json", str(datasets / "coco-mini/captions_train2017.json"),
                          "--images", str(datasets / "coco-mini/train2017"), "--limit", "6",
                          "--samples", str(samples))
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(scores) == SCORE_KEYS
    assert scores["images"] == 6
    assert 0 < scores["bleu1"] <= 1
    assert scores["meteor"] is not None
    lines = samples.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image,caption,references"
    assert len(lines) == 7


def test_evaluate_selects_held_out_csv_split(datasets):
    flickr = datasets / "flickr8k-900"
    result = run_evaluate("--captions-csv", str(flickr / "captions.csv"),
                          "--images", str(flickr / "images"),
                          "--select-every", "10", "--select-offset", "0", "--limit", "4")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["images"] == 4


def test_evaluate_without_java_skips_meteor_with_message(datasets, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no java
    result = run_evaluate("--coco-json", str(datasets / "coco-mini/captions_train2017.json"),
                          "--images", str(datasets / "coco-mini/train2017"), "--limit", "2",
                          env=env)
    assert result.returncode == 0, result.stderr
    assert "METEOR skipped" in result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["meteor"] is None
    assert scores["cider"] >= 0


def test_evaluate_names_corrupt_checkpoint(datasets, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [sys.executable, "-m", "ml.evaluate", "--checkpoint", str(broken),
         "--coco-json", str(datasets / "coco-mini/captions_train2017.json"),
         "--images", str(datasets / "coco-mini/train2017")],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert str(broken) in result.stderr
