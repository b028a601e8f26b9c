"""Cleaning client file names for display, in captioning.filenames."""

import pytest

from captioning.filenames import MAX_DISPLAY_FILENAME_CHARS, display_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("holiday.jpg", "holiday.jpg"),
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("/etc/passwd.jpg", "passwd.jpg"),
        ("..\\..\\windows\\x.jpg", "x.jpg"),
        ("C:\\Users\\me\\Pictures\\cat.png", "cat.png"),
        ("a\x00b\x07c\x1b[0m.png", "abc[0m.png"),
        ("\x7f\x85del.png", "del.png"),
        ("photo\u202egnp.exe", "photognp.exe"),
        ("\u2066isolate\u2069.png", "isolate.png"),
        ("zero\u200bwidth\ufeff.png", "zerowidth.png"),
        ("tab\tand\nnewline  .png", "tab and newline .png"),
        ("猫の写真😀.png", "猫の写真😀.png"),
        ("e\u0301te\u0301.png", "\u00e9t\u00e9.png"),
        ("<b>bold</b>.png", "b>.png"),
        ("<img src=x>.png", "<img src=x>.png"),
    ],
)
def test_display_filename_cleans(name, expected):
    assert display_filename(name) == expected


@pytest.mark.parametrize("name", [None, "", ".", "..", "../", "\x00\x01", "\u202e", "   "])
def test_display_filename_of_nothing_is_empty(name):
    assert display_filename(name) == ""


def test_long_name_keeps_extension():
    cleaned = display_filename("x" * 300 + ".jpeg")

    assert len(cleaned) == MAX_DISPLAY_FILENAME_CHARS
    assert cleaned.endswith("….jpeg")
    assert cleaned.startswith("xxxx")


def test_long_extension_is_cut_too():
    cleaned = display_filename("y" * 200 + ".averyveryverylongextension", max_chars=20)

    assert cleaned == "y" * 19 + "…"


def test_name_at_limit_is_unchanged():
    name = "z" * (MAX_DISPLAY_FILENAME_CHARS - 4) + ".png"

    assert display_filename(name) == name
