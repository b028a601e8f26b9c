"""The pages in a real browser against the real stack: Redis, a Celery worker, the model.

Playwright drives Debian's Chromium (/usr/bin/chromium); it never downloads a browser.
Screenshots of the main pages go to test-artifacts/screenshots/.
"""

import base64
import re
from pathlib import Path

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# The first job of a session loads the model in the worker, on a CPU shared with
# other work, so the caption may take much longer than the few seconds it usually does.
CAPTION_TIMEOUT_MS = 180_000
JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}/$")


@pytest.fixture
def browser(stack_server):
    """Start Chromium for one test.

    Playwright's sync API runs an event loop in this thread, and Django refuses
    database queries while one runs. Depending on `stack_server` makes pytest stop the
    browser before the database is flushed after the test.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`.")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack_server):
    context = browser.new_context(base_url=stack_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS_DIR / f"{name}.png"), full_page=True)


def submit_upload(page) -> "playwright_sync.Response":
    """Submit the upload form and return the response to the first file's own POST.

    The page's script creates a batch, then posts each file on its own; a single
    accepted file then opens its job page.
    """
    with page.expect_response(
        lambda response: response.request.method == "POST" and "/images/" in response.url
    ) as posted:
        page.get_by_role("button", name=re.compile("Upload and caption|上传并生成描述")).click()
    response = posted.value
    if response.status == 201:
        page.wait_for_url(JOB_URL)
    return response


def loaded_width(image) -> int:
    """Return an image's natural width once it has loaded (0 when it failed to load).

    Thumbnails are lazy and their renditions are written on first request, so the
    width read straight after navigation can still be 0.
    """
    image.scroll_into_view_if_needed()
    return image.evaluate(
        """image => image.complete ? image.naturalWidth : new Promise(resolve => {
            image.addEventListener("load", () => resolve(image.naturalWidth));
            image.addEventListener("error", () => resolve(0));
        })"""
    )


def wait_for_finished_job(page) -> None:
    """Wait until the job page's script shows a finished job, and fail unless it succeeded."""
    page.locator("[data-job-panel][data-finished='true']").wait_for(timeout=CAPTION_TIMEOUT_MS)
    panel = page.locator("[data-job-panel]")
    assert panel.get_attribute("data-status") == "succeeded", panel.inner_text()


class UploadInBrowserTests:
    def test_photo_is_captioned_on_job_page_without_reload(self, page, photo_path, settings):
        page.goto("/")
        page.get_by_label("Choose photos to caption").set_input_files(str(photo_path))
        playwright_sync.expect(page.locator(".preview")).to_have_count(1)
        playwright_sync.expect(page.locator(".preview-name")).to_have_text(photo_path.name)
        screenshot(page, "upload-with-preview")

        response = submit_upload(page)

        assert response.status == 201
        assert JOB_URL.search(page.url), page.url
        screenshot(page, "job-waiting")
        # A reload would clear this marker, so finding it later proves the caption
        # arrived through the polling script.
        page.evaluate("window.loadedOnce = true")
        wait_for_finished_job(page)
        assert page.evaluate("window.loadedOnce") is True
        caption = page.locator("[data-caption]")

        text = caption.inner_text().strip()
        assert len(text.split()) >= 3, text
        playwright_sync.expect(page.locator("[data-job-image]")).to_have_attribute("alt", text)
        playwright_sync.expect(page.locator("[data-status-badge]")).to_have_text("Succeeded")
        assert page.locator(".alternative").count() >= 1
        playwright_sync.expect(page.locator(".facts")).to_contain_text("Model version")
        assert loaded_width(page.locator("[data-job-image]")) > 0
        screenshot(page, "job-captioned")

        # The upload was anonymous, and the API reads anonymous jobs only when allowed.
        settings.API_ALLOW_ANONYMOUS = True
        job_id = page.url.rstrip("/").rsplit("/", 1)[1]
        api = page.request.get(f"/api/v1/captions/{job_id}/").json()
        assert api["caption"] == text

        page.goto("/jobs/")
        card = page.locator(".job-card").first
        playwright_sync.expect(card.locator("img")).to_have_attribute("alt", text)
        assert loaded_width(card.locator("img")) > 0
        screenshot(page, "recent-jobs")

    def test_dropped_files_are_previewed_and_uploaded(self, page, photo_path, bad_inputs_dir):
        page.goto("/")
        files = [
            {"name": photo_path.name, "data": base64.b64encode(photo_path.read_bytes()).decode()},
            {"name": "one-pixel.png", "data": base64.b64encode((bad_inputs_dir / "one-pixel.png").read_bytes()).decode()},
        ]
        page.locator("[data-dropzone]").evaluate(
            """(zone, files) => {
                const transfer = new DataTransfer();
                for (const file of files) {
                    const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
                    transfer.items.add(new File([bytes], file.name));
                }
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }""",
            files,
        )

        playwright_sync.expect(page.locator(".preview")).to_have_count(2)
        assert page.locator("#id_images").evaluate("input => input.files.length") == 2
        playwright_sync.expect(page.locator("[data-selection-summary]")).to_have_text("Photos chosen: 2")

        submit_upload(page)

        playwright_sync.expect(page.locator("[data-upload-outcome]")).to_contain_text("Uploaded 1 of 2 files.")
        playwright_sync.expect(page.locator(".preview.is-done")).to_contain_text(photo_path.name)
        playwright_sync.expect(page.locator(".preview.is-error")).to_contain_text("minimum is 32x32")
        playwright_sync.expect(page.get_by_role("link", name="Open the batch")).to_be_visible()
        screenshot(page, "upload-results")

    def test_removing_a_preview_drops_the_file(self, page, photo_path, bad_inputs_dir):
        page.goto("/")
        page.get_by_label("Choose photos to caption").set_input_files(
            [str(photo_path), str(bad_inputs_dir / "grayscale.jpg")]
        )
        playwright_sync.expect(page.locator(".preview")).to_have_count(2)

        page.get_by_role("button", name="Remove grayscale.jpg").click()

        playwright_sync.expect(page.locator(".preview")).to_have_count(1)
        assert page.locator("#id_images").evaluate("input => input.files[0].name") == photo_path.name


# Files from the bad-inputs table that the browser covers; the Django client tests
# cover all of them.
BROWSER_BAD_INPUTS = [
    ("truncated.jpg", 400, "truncated or corrupt"),
    ("one-pixel.png", 400, "minimum is 32x32"),
    ("empty.png", 400, "The file is empty"),
    ("gif-header-html.gif", 400, "not a JPEG, PNG, WebP, GIF, BMP or TIFF image"),
    ("png-named.txt", 201, None),
]


class BadInputInBrowserTests:
    @pytest.mark.parametrize(("name", "status", "message"), BROWSER_BAD_INPUTS)
    def test_bad_input_through_the_form(self, page, bad_inputs_dir, name, status, message):
        page.goto("/")
        page.get_by_label("Choose photos to caption").set_input_files(str(bad_inputs_dir / name))

        response = submit_upload(page)

        assert response.status == status
        if message is None:
            assert JOB_URL.search(page.url), page.url
            playwright_sync.expect(page.locator(".job-figure figcaption")).to_have_text(name)
        else:
            error = page.locator(".preview.is-error")
            playwright_sync.expect(error).to_contain_text(name)
            playwright_sync.expect(error).to_contain_text(message)
            if name == "truncated.jpg":
                screenshot(page, "upload-rejected")


class LanguageInBrowserTests:
    def test_switch_to_chinese_is_remembered(self, page):
        page.goto("/")
        playwright_sync.expect(page.locator("h1")).to_have_text("Caption your photos")

        page.get_by_role("button", name="简体中文").click()
        page.wait_for_load_state()

        assert page.locator("html").get_attribute("lang") == "zh-hans"
        playwright_sync.expect(page.locator("h1")).to_have_text("为你的照片生成描述")
        playwright_sync.expect(page.locator("#upload-limits")).to_contain_text("上传限制")
        playwright_sync.expect(page.get_by_role("button", name="上传并生成描述")).to_be_visible()
        screenshot(page, "upload-zh-hans")

        page.goto("/jobs/")
        playwright_sync.expect(page.locator("h1")).to_have_text("最近的任务")
        playwright_sync.expect(page.get_by_role("button", name="简体中文")).to_have_attribute("aria-pressed", "true")

    def test_job_page_updates_in_chinese(self, page, photo_path):
        page.goto("/")
        page.get_by_role("button", name="简体中文").click()
        page.wait_for_load_state()
        page.get_by_label("选择要生成描述的照片").set_input_files(str(photo_path))

        submit_upload(page)

        playwright_sync.expect(page.locator("h1")).to_have_text("描述任务")
        wait_for_finished_job(page)
        playwright_sync.expect(page.locator("[data-status-badge]")).to_have_text("已完成")
        playwright_sync.expect(page.locator(".facts")).to_contain_text("模型版本")
        playwright_sync.expect(page.locator(".alternative-score").first).to_contain_text("置信度")
        screenshot(page, "job-zh-hans")

    def test_rejected_upload_message_in_chinese(self, page, bad_inputs_dir):
        page.goto("/")
        page.get_by_role("button", name="简体中文").click()
        page.wait_for_load_state()
        page.get_by_label("选择要生成描述的照片").set_input_files(str(bad_inputs_dir / "one-pixel.png"))

        response = submit_upload(page)

        assert response.status == 400
        playwright_sync.expect(page.locator(".preview.is-error")).to_contain_text("最小为 32x32")
        screenshot(page, "upload-rejected-zh-hans")


class LayoutInBrowserTests:
    def test_phone_width_has_no_horizontal_scroll(self, page, photo_path):
        page.set_viewport_size({"width": 375, "height": 740})
        page.goto("/")
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name="Choose photos", exact=True).click()
        chooser.value.set_files(str(photo_path))
        playwright_sync.expect(page.locator(".preview")).to_have_count(1)

        scroll_width = page.evaluate("document.documentElement.scrollWidth")

        assert scroll_width <= 375
        screenshot(page, "upload-phone")

    def test_dark_scheme_uses_dark_colours(self, page):
        page.emulate_media(color_scheme="dark")
        page.goto("/jobs/")

        background = page.evaluate("getComputedStyle(document.body).backgroundColor")

        assert background == "rgb(17, 21, 28)"
        screenshot(page, "recent-jobs-dark")

    def test_keyboard_reaches_skip_link_then_navigation(self, page):
        page.goto("/")

        page.keyboard.press("Tab")
        first = page.evaluate("document.activeElement.textContent.trim()")
        page.keyboard.press("Enter")

        assert first == "Skip to main content"
        assert page.evaluate("document.activeElement.id") == "main"
