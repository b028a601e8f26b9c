"""The Simplified Chinese catalogue covers every page string, and the pages use it."""

import ast
import gettext as gettext_module
import io
import json
import re
import tokenize
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.translation.template import templatize
from PIL import Image

from captioning import services
from captioning.models import CaptionJob

ROOT = Path(__file__).resolve().parents[2]
PO_PATH = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO_PATH = PO_PATH.with_suffix(".mo")
# The same sources that `manage.py makemessages` scans for this catalogue.
SOURCE_GLOBS = ["templates/**/*.html", "captioning/**/*.py", "captionsite/**/*.py"]

# Translation functions and the position of the msgid among their arguments.
GETTEXT_FUNCTIONS = {
    "gettext": 0,
    "gettext_lazy": 0,
    "gettext_noop": 0,
    "_": 0,
    "ngettext": 0,
    "ngettext_lazy": 0,
    "pgettext": 1,
    "pgettext_lazy": 1,
    "npgettext": 1,
    "npgettext_lazy": 1,
}


# Reading the catalogue


def po_entries(path: Path) -> list[dict]:
    """Parse a .po file into entries with msgid, msgid_plural, msgstr list and flags."""
    entries = []
    entry: dict = {}
    field = None

    def finish():
        if "msgid" in entry:
            entries.append(entry.copy())
        entry.clear()

    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            finish()
            field = None
        elif line.startswith("#,"):
            entry.setdefault("flags", set()).update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#~"):
            entry["obsolete"] = True
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            # A continuation line extends the string started on the line above.
            if field == "msgstr":
                entry["msgstr"][-1] += ast.literal_eval(line)
            else:
                entry[field] += ast.literal_eval(line)
        else:
            keyword, _, value = line.partition(" ")
            if keyword.startswith("msgstr"):
                field = "msgstr"
                entry.setdefault("msgstr", []).append(ast.literal_eval(value))
            else:
                field = keyword
                entry[keyword] = ast.literal_eval(value)
    finish()
    return entries


def source_msgids() -> set[str]:
    """Return every msgid marked for translation in the templates and app code.

    Templates go through Django's `templatize`, the step makemessages runs before
    xgettext, and the result is read with Python's tokenizer.
    """
    msgids = set()
    for pattern in SOURCE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            if "migrations" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".html":
                # templatize keeps the template's indentation, which the tokenizer
                # would read as Python blocks.
                text = "\n".join(line.lstrip() for line in templatize(text, origin=str(path)).splitlines())
            msgids |= code_msgids(text)
    return msgids


def code_msgids(source: str) -> set[str]:
    tokens = [
        token
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    ]
    msgids = set()
    for index, token in enumerate(tokens[:-2]):
        if token.type != tokenize.NAME or token.string not in GETTEXT_FUNCTIONS:
            continue
        if tokens[index + 1].string != "(":
            continue
        arguments = string_arguments(tokens, index + 2)
        position = GETTEXT_FUNCTIONS[token.string]
        if len(arguments) > position and arguments[position] is not None:
            msgids.add(arguments[position])
    return msgids


def string_arguments(tokens: list, start: int) -> list:
    """Return the literal string arguments of a call, None for any other argument."""
    arguments: list = []
    current: str | None = None
    literal = True
    depth = 0
    for token in tokens[start:]:
        if token.string in "([{" and token.type == tokenize.OP:
            depth += 1
            literal = False
        elif token.string in ")]}" and token.type == tokenize.OP:
            if depth == 0:
                arguments.append(current if literal else None)
                return arguments
            depth -= 1
        elif token.string == "," and depth == 0:
            arguments.append(current if literal else None)
            current, literal = None, True
        elif token.type == tokenize.STRING and depth == 0:
            current = (current or "") + ast.literal_eval(token.string)
        elif depth == 0:
            literal = False
    return arguments


# Checks of the catalogue


def test_catalogue_has_no_empty_or_fuzzy_entries():
    entries = [entry for entry in po_entries(PO_PATH) if entry["msgid"] and not entry.get("obsolete")]

    assert entries, f"{PO_PATH} has no entries"
    empty = [entry["msgid"] for entry in entries if not all(entry["msgstr"])]
    fuzzy = [entry["msgid"] for entry in entries if "fuzzy" in entry.get("flags", set())]
    assert empty == [], "entries without a translation"
    assert fuzzy == [], "entries marked fuzzy, so gettext ignores them"


def test_catalogue_contains_every_marked_string():
    """A string marked in a template or in code and missing from the .po stays English."""
    in_catalogue = {entry["msgid"] for entry in po_entries(PO_PATH) if not entry.get("obsolete")}

    missing = sorted(source_msgids() - in_catalogue)

    assert missing == [], "run manage.py makemessages -l zh_Hans and translate these"


def test_catalogue_placeholders_match():
    pattern = re.compile(r"%\(\w+\)[sd]|%%")
    for entry in po_entries(PO_PATH):
        if not entry["msgid"]:
            continue
        expected = sorted(pattern.findall(entry.get("msgid_plural") or entry["msgid"]))
        for msgstr in entry["msgstr"]:
            assert sorted(pattern.findall(msgstr)) == expected, entry["msgid"]


def test_compiled_catalogue_matches_po():
    """The committed .mo is what Django reads, so it must carry every .po translation."""
    with MO_PATH.open("rb") as file:
        compiled = gettext_module.GNUTranslations(file)

    for entry in po_entries(PO_PATH):
        if not entry["msgid"] or entry.get("obsolete"):
            continue
        if "msgid_plural" in entry:
            assert compiled.ngettext(entry["msgid"], entry["msgid_plural"], 1) == entry["msgstr"][0]
        else:
            assert compiled.gettext(entry["msgid"]) == entry["msgstr"][0], entry["msgid"]


# Checks of the rendered pages


class VisibleText(HTMLParser):
    """Collect the text a person reads or hears: text nodes and labelling attributes."""

    LABEL_ATTRIBUTES = {"alt", "title", "aria-label", "placeholder"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip_depth = 0
        self.in_json = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("script", "style"):
            self.skip_depth += 1
            self.in_json = attributes.get("type") == "application/json"
        for name, value in attrs:
            if name in self.LABEL_ATTRIBUTES and value and attributes.get("type") != "hidden":
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip_depth -= 1
            self.in_json = False

    def handle_data(self, data):
        if self.in_json:
            # Strings for upload.js: they end up on the page as well.
            self.parts.extend(value for value in json.loads(data).values() if isinstance(value, str))
        elif not self.skip_depth and data.strip():
            self.parts.append(data.strip())


def english_phrases(html: str, allowed: list[str]) -> list[str]:
    """Return runs of two or more English words that a Chinese page still shows."""
    parser = VisibleText()
    parser.feed(html)
    phrases = []
    for part in parser.parts:
        for text in allowed:
            part = part.replace(text, " ")
        phrases += re.findall(r"[A-Za-z]{2,}(?:[ ,.'-]+[A-Za-z]{2,})+", part)
    return phrases


@pytest.fixture
def chinese_client(client):
    client.cookies["django_language"] = "zh-hans"
    return client


@pytest.fixture
def finished_job(private_media_root):
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(buffer, format="PNG")
    job = services.job_create(
        upload=SimpleUploadedFile("garden.png", buffer.getvalue()), original_filename="garden.png"
    )
    job.status = CaptionJob.Status.SUCCEEDED
    job.caption = "a dog runs through the grass"
    job.alternatives = [{"text": "a dog runs through the grass", "log_prob": -2.0, "confidence": 0.7}]
    job.started_at = job.created_at + timedelta(seconds=1)
    job.finished_at = timezone.now()
    job.model_seconds = 0.3
    job.save()
    return job


# Text that stays English on a Chinese page: the product name, a language name and the
# format names. Tests add the file names of their uploads and the model's captions.
ALLOWED_EVERYWHERE = ["Captionsite", "English", "JPEG, PNG, WebP, GIF, BMP, TIFF"]


@pytest.mark.django_db
class ChinesePageTests:
    def test_upload_page_is_all_chinese(self, chinese_client):
        html = chinese_client.get("/").content.decode()

        assert '<html lang="zh-hans">' in html
        assert english_phrases(html, ALLOWED_EVERYWHERE) == []

    def test_job_page_is_all_chinese(self, chinese_client, finished_job):
        html = chinese_client.get(f"/jobs/{finished_job.pk}/").content.decode()

        allowed = ALLOWED_EVERYWHERE + [finished_job.caption, finished_job.original_filename]
        assert "置信度 70%" in html
        assert english_phrases(html, allowed) == []

    def test_job_list_is_all_chinese(self, chinese_client, finished_job):
        html = chinese_client.get("/jobs/").content.decode()

        assert "最近的任务" in html
        assert english_phrases(html, ALLOWED_EVERYWHERE + [finished_job.caption, finished_job.original_filename]) == []

    def test_rejected_upload_is_all_chinese(self, chinese_client, private_media_root):
        tiny = io.BytesIO()
        Image.new("RGB", (4, 4)).save(tiny, format="PNG")

        response = chinese_client.post("/", {"images": SimpleUploadedFile("tiny.png", tiny.getvalue())})

        assert response.status_code == 400
        html = response.content.decode()
        assert "最小为 32x32" in html
        assert english_phrases(html, ALLOWED_EVERYWHERE + ["tiny.png"]) == []

    @pytest.mark.parametrize(
        "name", ["truncated.jpg", "empty.png", "one-pixel.png", "bomb-15000x15000.png", "gif-header-html.gif"]
    )
    def test_bad_input_message_is_chinese(self, chinese_client, private_media_root, bad_inputs_dir, name):
        upload = SimpleUploadedFile(name, (bad_inputs_dir / name).read_bytes())

        response = chinese_client.post("/", {"images": upload})

        assert response.status_code == 400
        assert english_phrases(response.content.decode(), ALLOWED_EVERYWHERE + [name]) == []

    def test_english_detector_finds_english(self, client):
        """The check above would pass on any page if the detector found nothing."""
        html = client.get("/").content.decode()

        assert "Caption your photos" in english_phrases(html, ALLOWED_EVERYWHERE)


@pytest.fixture
def chinese_batch(finished_job):
    batch = services.batch_create()
    finished_job.batch = batch
    finished_job.save(update_fields=["batch"])
    failed = services.batch_job_create(
        batch=batch, upload=SimpleUploadedFile("broken.png", finished_job.image.open("rb").read()), original_filename="broken.png"
    )
    failed.status = CaptionJob.Status.FAILED
    failed.save(update_fields=["status"])
    return batch


@pytest.mark.django_db
class ChineseBatchPageTests:
    def test_batch_page_is_all_chinese(self, chinese_client, chinese_batch, finished_job):
        html = chinese_client.get(f"/batches/{chinese_batch.pk}/").content.decode()

        allowed = ALLOWED_EVERYWHERE + [finished_job.caption, "garden.png", "broken.png", "CSV", "JSON"]
        assert "已完成 2 / 2 张照片，1 张失败" in html
        assert english_phrases(html, allowed) == []

    def test_batch_status_json_is_chinese(self, chinese_client, chinese_batch, finished_job):
        body = chinese_client.get(f"/batches/{chinese_batch.pk}/status/").json()

        allowed = ALLOWED_EVERYWHERE + [finished_job.caption, "garden.png", "broken.png"]
        assert body["summary"] == "已完成 2 / 2 张照片，1 张失败"
        assert body["jobs"][0]["announcement"].startswith("garden.png 的描述已生成")
        for job in body["jobs"]:
            assert english_phrases(job["html"], allowed) == []

    def test_rejected_batch_upload_is_chinese(self, chinese_client, chinese_batch):
        tiny = io.BytesIO()
        Image.new("RGB", (4, 4)).save(tiny, format="PNG")

        response = chinese_client.post(
            f"/batches/{chinese_batch.pk}/images/", {"image": SimpleUploadedFile("tiny.png", tiny.getvalue())}
        )

        assert response.status_code == 400
        assert "最小为 32x32" in response.json()["error"]["message"]

    def test_delete_page_is_all_chinese(self, chinese_client, finished_job):
        html = chinese_client.get(f"/jobs/{finished_job.pk}/delete/").content.decode()

        assert "删除这个任务？" in html
        assert english_phrases(html, ALLOWED_EVERYWHERE + [finished_job.caption, "garden.png"]) == []

    def test_filtered_history_is_all_chinese(self, chinese_client, finished_job):
        response = chinese_client.get("/jobs/", {"created_from": "2026-02-10", "created_to": "2026-02-01"})

        html = response.content.decode()
        assert response.status_code == 400
        assert "结束日期早于起始日期" in html
        assert english_phrases(html, ALLOWED_EVERYWHERE + [finished_job.caption, "garden.png"]) == []


def script_string_keys(script: str) -> set[str]:
    return set(re.findall(r"\bstrings\.(\w+)", (ROOT / "static" / "js" / script).read_text(encoding="utf-8")))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("script", "page", "element_id"),
    [("upload.js", "/", "upload-strings"), ("batch.js", "batch", "batch-strings")],
)
def test_script_reads_only_strings_the_server_sends(chinese_client, chinese_batch, script, page, element_id):
    """A script shows no text of its own: every message comes translated from the page."""
    url = f"/batches/{chinese_batch.pk}/" if page == "batch" else page
    html = chinese_client.get(url).content.decode()
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)

    assert match, f"{url} has no #{element_id}"
    sent = json.loads(match.group(1))
    assert script_string_keys(script) - set(sent) == set()
    untranslated = [value for value in sent.values() if isinstance(value, str) and english_phrases(f"<p>{value}</p>", [])]
    assert untranslated == []
