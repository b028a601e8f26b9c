"""Batches in a real browser against the real stack: upload, live captions, correction,
export, and both languages. Screenshots go to test-artifacts/screenshots/.
"""

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.web.test_browser import CAPTION_TIMEOUT_MS, JOB_URL, browser, page, screenshot  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = pytest.mark.stack

BATCH_URL = re.compile(r"/batches/[0-9a-f-]{36}/$")
# Twenty captions on a shared CPU, after the model has loaded.
TWENTY_CAPTIONS_TIMEOUT_MS = 900_000
DATASET_PHOTOS = "flickr8k-900/images"


def dataset_photos(dataset_dir: Path, count: int) -> list[Path]:
    photos = sorted((dataset_dir / DATASET_PHOTOS).glob("*.jpg"))[:count]
    assert len(photos) == count, f"expected {count} photos in {dataset_dir / DATASET_PHOTOS}"
    return photos


def upload_files(page, files: list[Path]) -> None:
    """Choose `files` on the upload page, upload them, and wait until each has its result."""
    page.get_by_label(re.compile("Choose photos to caption|选择要生成描述的照片")).set_input_files([str(path) for path in files])
    expect(page.locator(".preview")).to_have_count(len(files))
    page.get_by_role("button", name=re.compile("Upload and caption|上传并生成描述")).click()
    expect(page.locator(".preview.is-done, .preview.is-error")).to_have_count(len(files), timeout=120_000)


def wait_for_finished_batch(page, timeout_ms: int) -> None:
    page.locator("[data-batch][data-finished='true']").wait_for(timeout=timeout_ms)


def download_text(page, link_name: str) -> tuple[str, bytes]:
    with page.expect_download() as download_info:
        page.get_by_role("link", name=link_name).click()
    download = download_info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def correct_caption_by_keyboard(page, card, text: str) -> None:
    """Open a card's correction form, type `text` and save it, using only the keyboard."""
    card.locator("summary").focus()
    page.keyboard.press("Enter")
    textarea = card.locator("textarea")
    expect(textarea).to_be_visible()
    textarea.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    expect(card.locator("[data-caption]")).to_have_text(text)


def csv_rows(data: bytes) -> list[dict]:
    assert data.startswith(b"\xef\xbb\xbf"), "the CSV starts without a byte order mark"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


class BatchInBrowserTests:
    def test_three_photos_and_bad_file_in_both_languages(self, page, dataset_dir, bad_inputs_dir, stack_server):
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack_server)
        photos = dataset_photos(dataset_dir, 3)
        page.goto("/")
        expect(page.locator("#upload-limits")).to_contain_text("Files per upload")
        page.locator("details.advanced summary").click()
        expect(page.get_by_label("Beam size")).to_be_visible()

        upload_files(page, photos + [bad_inputs_dir / "truncated.jpg"])

        expect(page.locator(".preview.is-error")).to_contain_text("truncated or corrupt")
        expect(page.locator(".preview.is-done")).to_have_count(3)
        expect(page.locator("[data-upload-outcome]")).to_contain_text("Uploaded 3 of 4 files.")
        screenshot(page, "upload-batch-results")
        page.get_by_role("link", name="Open the batch").click()
        page.wait_for_url(BATCH_URL)
        batch_page = page.url

        # Captions arrive through polling: a reload would clear this marker.
        page.evaluate("window.loadedOnce = true")
        wait_for_finished_batch(page, CAPTION_TIMEOUT_MS)
        assert page.evaluate("window.loadedOnce") is True
        cards = page.locator("[data-job-card]")
        expect(cards).to_have_count(3)
        expect(page.locator("[data-batch-summary]")).to_have_text("3 of 3 photos finished")
        for index in range(3):
            card = cards.nth(index)
            caption = card.locator("[data-caption]").inner_text().strip()
            assert len(caption.split()) >= 3, caption
            expect(card.locator("img")).to_have_attribute("alt", caption)
        expect(page.locator(".batch-rejected")).to_contain_text("truncated.jpg")
        screenshot(page, "batch-en")

        # Copy by keyboard, with a visible confirmation.
        first = cards.nth(0)
        first_caption = first.locator("[data-caption]").inner_text().strip()
        first.locator("[data-copy]").focus()
        page.keyboard.press("Enter")
        expect(first.locator("[data-copy-status]")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == first_caption

        # Correct the second caption; the model's caption stays visible.
        second = cards.nth(1)
        original = second.locator("[data-caption]").inner_text().strip()
        correct_caption_by_keyboard(page, second, "two dogs playing on a lawn")
        expect(second.locator("[data-original-caption]")).to_contain_text(original)
        expect(second.locator("img")).to_have_attribute("alt", "two dogs playing on a lawn")

        filename, data = download_text(page, "Export CSV")
        assert filename.endswith(".csv")
        rows = csv_rows(data)
        photo_rows, rejected_row = rows[:-1], rows[-1]
        assert sorted(row["filename"] for row in photo_rows) == sorted(path.name for path in photos)
        assert rows[1]["caption"] == "two dogs playing on a lawn"
        assert rows[1]["original_caption"] == original
        assert rows[0]["model_version"] == "starter:1"
        assert all(row["status"] == "succeeded" for row in photo_rows)
        # The file rejected at upload ends the export, with its reason.
        assert rejected_row["filename"] == "truncated.jpg"
        assert rejected_row["status"] == "rejected"
        assert "truncated or corrupt" in rejected_row["error"]

        # The job page shows the correction and the model's caption.
        second.locator(".batch-card-name").click()
        page.wait_for_url(JOB_URL)
        expect(page.locator("[data-corrected-caption]")).to_have_text("two dogs playing on a lawn")
        expect(page.locator("[data-original-caption]")).to_have_text(original)
        expect(page.locator(".facts").last).to_contain_text("starter:1")
        screenshot(page, "job-corrected")
        page.go_back()
        page.wait_for_url(BATCH_URL)

        # Chinese, chosen with the switcher and remembered across pages.
        page.get_by_role("button", name="简体中文").click()
        page.wait_for_load_state()
        expect(page.locator("h1")).to_have_text("照片批次")
        expect(page.locator("[data-batch-summary]")).to_have_text("已完成 3 / 3 张照片")
        expect(page.get_by_role("link", name="导出 CSV")).to_be_visible()
        expect(cards.nth(1).locator("[data-original-caption]")).to_contain_text("模型的描述")
        screenshot(page, "batch-zh-hans")

        page.goto("/jobs/?q=lawn")
        expect(page.locator("h1")).to_have_text("最近的任务")
        expect(page.locator(".job-card")).to_have_count(1)
        expect(page.locator(".job-card-caption")).to_have_text("two dogs playing on a lawn")
        screenshot(page, "history-zh-hans")

        page.get_by_role("button", name="English").click()
        page.wait_for_load_state()
        expect(page.get_by_label("Search captions")).to_have_value("lawn")
        screenshot(page, "history-en")

        # Phone width: the batch grid wraps without horizontal scrolling.
        page.set_viewport_size({"width": 375, "height": 740})
        page.goto(batch_page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, "batch-phone")
        page.goto("/jobs/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, "history-phone")

    def test_delete_from_history_asks_first(self, page, photo_path):
        page.goto("/")
        page.get_by_label("Choose photos to caption").set_input_files(str(photo_path))
        page.get_by_role("button", name="Upload and caption").click()
        page.wait_for_url(JOB_URL)
        page.locator("[data-job-panel][data-finished='true']").wait_for(timeout=CAPTION_TIMEOUT_MS)

        page.goto("/jobs/")
        page.get_by_role("link", name=f"Delete the job of {photo_path.name}").click()
        expect(page.locator("h1")).to_have_text("Delete this job?")
        screenshot(page, "job-delete")
        page.get_by_role("button", name="Delete", exact=True).click()

        expect(page.locator(".messages")).to_contain_text(f"Deleted the job of {photo_path.name}.")
        expect(page.locator(".job-card")).to_have_count(0)

    def test_twenty_photos_with_broken_file(self, page, dataset_dir, bad_inputs_dir):
        photos = dataset_photos(dataset_dir, 20)
        page.goto("/")

        upload_files(page, photos[:10] + [bad_inputs_dir / "truncated.jpg"] + photos[10:])

        expect(page.locator(".preview.is-done")).to_have_count(20)
        expect(page.locator(".preview.is-error")).to_have_count(1)
        page.get_by_role("link", name="Open the batch").click()
        page.wait_for_url(BATCH_URL)
        wait_for_finished_batch(page, TWENTY_CAPTIONS_TIMEOUT_MS)
        expect(page.locator("[data-job-card][data-status='succeeded']")).to_have_count(20)
        expect(page.locator("[data-batch-summary]")).to_have_text("20 of 20 photos finished")
        screenshot(page, "batch-twenty")

        fixed = page.locator("[data-job-card]").nth(7)
        correct_caption_by_keyboard(page, fixed, "a child on a red slide")

        _, csv_data = download_text(page, "Export CSV")
        rows = csv_rows(csv_data)
        photo_rows = rows[:20]
        assert len(rows) == 21
        assert sorted(row["filename"] for row in photo_rows) == sorted(path.name for path in photos)
        assert rows[7]["caption"] == "a child on a red slide"
        assert rows[7]["original_caption"] not in ("", "a child on a red slide")
        assert all(row["caption"] for row in photo_rows)
        assert (rows[20]["filename"], rows[20]["status"]) == ("truncated.jpg", "rejected")

        _, json_data = download_text(page, "Export JSON")
        document = json.loads(json_data)
        photo_items = document["items"][:20]
        assert len(document["items"]) == 21
        assert document["items"][7]["caption"] == "a child on a red slide"
        assert document["items"][7]["corrected"] is True
        assert all(item["alternatives"] for item in photo_items)
        assert all(item["model_version"] == "starter:1" for item in photo_items)
        assert document["items"][20]["status"] == "rejected"
