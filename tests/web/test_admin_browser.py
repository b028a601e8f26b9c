"""The admin dashboard and version comparison in a real browser against the live server.

No Celery worker is needed: the versions, their evaluations and their samples are rows
created before the browser starts, and the sample photos are real dataset photos.
Screenshots go to test-artifacts/screenshots/.
"""

import csv
import re
from pathlib import Path

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "a long test password"
SAMPLE_COUNT = 3


def screenshot(page, name: str) -> None:
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / f"{name}.png"), full_page=True)


def flickr_references(dataset_dir: Path, count: int) -> dict[str, list[str]]:
    """Return the reference captions of the first `count` photos of the Flickr8k sample."""
    references: dict[str, list[str]] = {}
    with open(dataset_dir / "flickr8k-900" / "captions.csv", newline="") as file:
        for row in csv.DictReader(file):
            if row["image"] not in references and len(references) == count:
                break
            references.setdefault(row["image"], []).append(row["caption"].strip())
    return references


@pytest.fixture
def compared_versions(transactional_db, django_db_serialized_rollback, settings, dataset_dir):
    """Two ready versions on the starter checkpoint, each evaluated on the same photos."""
    from django.contrib.auth import get_user_model

    from captioning.inference import STARTER_CHECKPOINT
    from captioning.models import Evaluation, ModelVersion

    settings.DATASET_ROOT = dataset_dir
    get_user_model().objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
    references = flickr_references(dataset_dir, SAMPLE_COUNT)
    versions = []
    for name, bleu4, caption_start in (("gamma", 0.17, "a dog"), ("delta", 0.21, "a person")):
        version = ModelVersion.objects.create(
            name=name, checkpoint=STARTER_CHECKPOINT, status=ModelVersion.Status.READY,
            scores={"flickr8k-test": {"bleu4": bleu4, "cider": 0.4, "images": SAMPLE_COUNT}},
        )
        Evaluation.objects.create(
            model_version=version, dataset_name="flickr8k-test", format=Evaluation.Format.CAPTIONS_CSV,
            annotations="flickr8k-900/captions.csv", images_dir="flickr8k-900/images",
            status=Evaluation.Status.SUCCEEDED,
            samples=[
                {"image": image, "caption": f"{caption_start} in photo {index} by {name}", "references": texts}
                for index, (image, texts) in enumerate(references.items())
            ],
        )
        versions.append(version)
    return versions, references


@pytest.fixture
def page(live_server, compared_versions):
    """Open a Chromium page on the live server once the rows exist.

    Playwright's sync API runs an event loop in this thread, and Django rejects database
    queries while one runs, so every row is created before the browser starts.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`.")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()


def test_compare_action_shows_scores_and_samples(page, compared_versions):
    versions, references = compared_versions
    expect = playwright_sync.expect

    # Sign in and read the dashboard on the admin index
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    dashboard = page.locator("#captioning-dashboard")
    expect(dashboard).to_be_visible()
    expect(dashboard.locator("[data-status='succeeded']")).to_be_visible()
    expect(dashboard.locator("svg[role=img]")).to_have_count(1)
    screenshot(page, "admin-dashboard")

    # Select both versions in the list and run the Compare action
    page.goto("/admin/captioning/modelversion/")
    for version in versions:
        page.locator(f"input.action-select[value='{version.pk}']").check()
    page.select_option("select[name=action]", "compare")
    page.click("button[name=index]")
    page.wait_for_url(re.compile(r"/admin/captioning/modelversion/compare/\?ids="))

    # Both versions' scores, with the better BLEU-4 highlighted
    scores = page.locator("[data-scores]")
    expect(scores).to_contain_text("gamma:1")
    expect(scores).to_contain_text("delta:1")
    bleu4 = page.locator("tr[data-score='flickr8k-test/bleu4']")
    expect(bleu4).to_contain_text("0.1700")
    expect(bleu4.locator(".best-score")).to_have_text(re.compile(r"^\s*0\.2100"))

    # Each photo with both captions, its references, and a loaded thumbnail
    rows = page.locator("tr[data-sample]")
    expect(rows).to_have_count(SAMPLE_COUNT)
    for index, (image, texts) in enumerate(references.items()):
        row = page.locator(f"tr[data-sample='{image}']")
        expect(row).to_contain_text(f"a dog in photo {index} by gamma")
        expect(row).to_contain_text(f"a person in photo {index} by delta")
        expect(row.locator("img")).to_have_attribute("alt", texts[0])
        row.locator("img").scroll_into_view_if_needed()
        width = row.locator("img").evaluate(
            """image => image.complete ? image.naturalWidth : new Promise(resolve => {
                image.addEventListener("load", () => resolve(image.naturalWidth));
                image.addEventListener("error", () => resolve(0));
            })"""
        )
        assert 0 < width <= 320, image

    expect(page.locator("#production-figures")).to_be_visible()
    screenshot(page, "admin-compare")
