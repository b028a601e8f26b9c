"""Rolling a new model version out on the real stack: train it, validate and score it,
compare it, send it a canary share, promote it and roll back, while one Celery worker
process keeps running and follows each step.
"""

import random
import re
import time
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from captioning import evaluations, registry, selectors
from captioning.models import CaptionJob, Evaluation, ModelVersion
from tests.stack.test_api_stack import post_image, wait_until_finished

pytestmark = pytest.mark.stack

# An upper bound for an evaluation of a few images on a busy two-core CPU; reaching it
# fails the test as stuck.
EVALUATION_DEADLINE_SECONDS = 300
# Held-out Flickr8k images scored in the evaluations: every 10th by name, the first 6.
EVALUATION = {
    "format": "captions-csv",
    "annotations": "flickr8k-900/captions.csv",
    "images_dir": "flickr8k-900/images",
    "select_every": 10,
    "select_offset": 0,
    "limit": 6,
}
PHOTOS = [
    "1001773457_577c3a7d70.jpg",
    "1009434119_febe49276a.jpg",
    "1012212859_01547e3f17.jpg",
]
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def tiny_training_args(dataset_dir: Path, scratch: Path) -> list[str]:
    """ml.train flags for a small decoder trained in seconds on coco-mini."""
    coco = dataset_dir / "coco-mini"
    return [
        "--coco-json", str(coco / "captions_train2017.json"),
        "--coco-images", str(coco / "train2017"),
        "--views", "1", "--epochs", "2", "--batch-size", "32", "--min-count", "2",
        "--d-model", "64", "--layers", "1", "--heads", "2", "--ffn-dim", "128",
        "--warmup-steps", "4", "--device", "cpu",
        "--cache-dir", str(scratch / "features"), "--logdir", str(scratch / "runs"),
    ]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, dataset_dir) -> Path:
    """A checkpoint trained once for the module with ml.train, for the later steps."""
    import subprocess
    import sys

    scratch = tmp_path_factory.mktemp("rollout")
    output = scratch / "tiny.safetensors"
    subprocess.run(
        [sys.executable, "-m", "ml.train", *tiny_training_args(dataset_dir, scratch), "--output", str(output)],
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        capture_output=True,
    )
    return output


def register_trained(path: Path) -> ModelVersion:
    call_command("register_model", str(path), "--name", "tiny", stdout=StringIO())
    return ModelVersion.objects.get(name="tiny")


def upload(stack_server: str, dataset_dir: Path, token: str, worker, name: str = PHOTOS[0]) -> dict:
    photo = dataset_dir / "flickr8k-900" / "images" / name
    status, _, created = post_image(f"{stack_server}/api/v1/captions/", photo, token)
    assert status == 202, created
    body = wait_until_finished(created["url"], token, worker)
    assert body["status"] == "succeeded", body["error_message"]
    return body


def evaluate_on_worker(version: ModelVersion, worker) -> Evaluation:
    evaluation = evaluations.evaluation_create(
        model_version=version, dataset_name="flickr8k-test", **EVALUATION
    )
    evaluations.evaluation_enqueue_later(evaluation=evaluation)
    deadline = time.monotonic() + EVALUATION_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        evaluation.refresh_from_db()
        if evaluation.status in (Evaluation.Status.SUCCEEDED, Evaluation.Status.FAILED):
            return evaluation
        time.sleep(0.5)
    pytest.fail(f"Evaluation {evaluation.pk} was still {evaluation.status}:\n{worker.log_text()[-5000:]}")


def test_train_model_version_is_validated_and_scored(
    stack_server, celery_worker_process, dataset_dir, tmp_path
):
    """train_model registers a ready version, and a worker scores it on held-out photos."""
    output = StringIO()
    call_command(
        "train_model", "tiny", "--output", str(tmp_path / "tiny.safetensors"),
        train_args=tiny_training_args(dataset_dir, tmp_path), stdout=output,
    )
    version = ModelVersion.objects.get(name="tiny")

    evaluation = evaluate_on_worker(version, celery_worker_process)

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.READY, version.status_message
    assert version.smoke_caption
    assert version.training["epochs"] == 2
    assert evaluation.status == Evaluation.Status.SUCCEEDED, evaluation.error_message
    assert evaluation.images_done == 6
    assert version.scores["flickr8k-test"]["images"] == 6
    assert "cider" in version.scores["flickr8k-test"]
    assert len(evaluation.samples) == 6


def test_canary_share_goes_to_candidate(
    stack_server, celery_worker_process, dataset_dir, api_token, trained_checkpoint
):
    """With a 10 % share, the seeded draw picks the canary jobs, and each states its version."""
    starter = selectors.model_version_get_active()
    candidate = register_trained(trained_checkpoint)
    registry.alias_set(name="candidate", model_version=candidate)
    registry.canary_set(percent=10)
    seed, uploads = 1, 12
    # The live server runs in this process, so seeding here fixes which jobs are drawn.
    replay = random.Random(seed)
    expected_canary = [replay.uniform(0, 100) < 10 for _ in range(uploads)]
    assert 0 < sum(expected_canary) < uploads
    registry.canary_random.seed(seed)

    bodies = [
        upload(stack_server, dataset_dir, api_token, celery_worker_process, PHOTOS[i % len(PHOTOS)])
        for i in range(uploads)
    ]

    routes = [CaptionJob.objects.get(pk=body["id"]).route for body in bodies]
    assert routes == ["canary" if canary else "active" for canary in expected_canary]
    for body, canary in zip(bodies, expected_canary):
        assert body["model_version"]["id"] == (candidate.pk if canary else starter.pk)


def test_worker_follows_promotion_and_rollback(
    stack_server, celery_worker_process, dataset_dir, api_token, trained_checkpoint
):
    """activate_model and --rollback take effect on the next job of the same worker process."""
    worker_pid = celery_worker_process.popen.pid
    starter = selectors.model_version_get_active()
    candidate = register_trained(trained_checkpoint)

    before = upload(stack_server, dataset_dir, api_token, celery_worker_process)
    call_command("activate_model", candidate.label, stdout=StringIO())
    promoted = upload(stack_server, dataset_dir, api_token, celery_worker_process)
    call_command("activate_model", "--rollback", stdout=StringIO())
    rolled_back = upload(stack_server, dataset_dir, api_token, celery_worker_process)

    assert before["model_version"]["label"] == starter.label
    assert promoted["model_version"]["label"] == candidate.label
    assert rolled_back["model_version"]["label"] == starter.label
    assert celery_worker_process.popen.poll() is None
    assert celery_worker_process.popen.pid == worker_pid


@pytest.fixture
def admin_page(stack_server, monkeypatch):
    """A Chromium page signed in to the admin as a superuser.

    Playwright's sync API runs an event loop in this thread, and the test reads and
    changes the database between browser steps, which Django refuses in a thread
    with a running loop unless DJANGO_ALLOW_ASYNC_UNSAFE is set.
    """
    from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS

    playwright_sync = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    get_user_model().objects.create_superuser("root", "root@example.org", "admin-pass-2026")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=stack_server, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.goto("/admin/login/")
        page.get_by_label("Username").fill("root")
        page.get_by_label("Password").fill("admin-pass-2026")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/admin/$"))
        yield page
        context.close()
        browser.close()


def test_admin_rollout_in_browser(
    stack_server, celery_worker_process, dataset_dir, api_token, trained_checkpoint, admin_page
):
    """In the admin: compare two scored versions, set the canary share, promote, roll back."""
    page = admin_page
    starter = selectors.model_version_get_active()
    candidate = register_trained(trained_checkpoint)
    for version in (starter, candidate):
        evaluation = evaluate_on_worker(version, celery_worker_process)
        assert evaluation.status == Evaluation.Status.SUCCEEDED, evaluation.error_message

    # Compare the two versions from the list.
    page.goto("/admin/captioning/modelversion/")
    for version in (starter, candidate):
        page.locator(f"input[name='_selected_action'][value='{version.pk}']").check()
    page.locator("select[name='action']").select_option("compare")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(re.compile(r"/compare/"))
    for version in (starter, candidate):
        assert version.label in page.content()
    first_sample = candidate.evaluations.get().samples[0]
    assert page.get_by_text(first_sample["caption"]).first.is_visible()
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / "admin-compare.png"), full_page=True)

    # Send the candidate a tenth of the traffic.
    page.goto(f"/admin/captioning/modelversion/{candidate.pk}/change/")
    page.get_by_role("link", name="Set alias").click()
    page.get_by_label("Alias").fill("candidate")
    page.get_by_role("button", name="Set alias").click()
    page.goto("/admin/captioning/modelversion/")
    page.get_by_role("link", name="Canary share").click()
    page.get_by_label("Canary share (%)").fill("10")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("The canary share is now 10 %.").wait_for()
    assert registry.rollout_get().canary_percent == 10

    # Promote it, and check that the worker captions with it.
    page.goto(f"/admin/captioning/modelversion/{candidate.pk}/change/")
    page.get_by_role("link", name="Activate").click()
    page.get_by_role("button", name="Activate").click()
    page.get_by_text(f"{candidate.label} is now the active version.").wait_for()
    registry.canary_set(percent=0)
    promoted = upload(stack_server, dataset_dir, api_token, celery_worker_process)
    assert promoted["model_version"]["label"] == candidate.label
    page.goto("/admin/captioning/modelversion/")
    page.screenshot(path=str(SCREENSHOTS_DIR / "admin-model-versions.png"), full_page=True)

    # Roll back from the list, in two clicks.
    page.get_by_role("link", name=f"Roll back to {starter.label}").click()
    page.get_by_role("button", name="Roll back").click()
    page.get_by_text(f"Rolled back: {starter.label} is the active version again.").wait_for()
    rolled_back = upload(stack_server, dataset_dir, api_token, celery_worker_process)
    assert rolled_back["model_version"]["label"] == starter.label
