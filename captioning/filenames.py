"""Cleaning the file name a client sent, for display only.

Uploads are stored under names that services.upload_name builds from the job id and
the detected format, so a client's file name never reaches a storage path. The name
is kept on the job as text for people to recognise their photo by, and this module
makes that text safe to show: no folders, no control or bidirectional-override
characters, and a bounded length.
"""

import re
import unicodedata

# The maximum length of a display name, in characters. A longer name loses the end
# of its stem, so that its start and its extension stay readable.
MAX_DISPLAY_FILENAME_CHARS = 120

# The maximum length of an extension, dot included, that a shortened name keeps whole.
MAX_KEPT_EXTENSION_CHARS = 10

ELLIPSIS = "…"

# Unicode categories dropped from names. Cc are control characters (NUL, tab, ESC,
# DEL, C1 controls). Cf are format characters: zero-width characters and the
# bidirectional overrides and isolates (U+202A to U+202E, U+2066 to U+2069), which
# can make "gpj.exe" read as "exe.jpg". Cs (lone surrogates), Co (private use) and
# Cn (unassigned) cannot be shown reliably either.
DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}

WHITESPACE_RUN = re.compile(r"\s+")


def display_filename(name: str | None, *, max_chars: int = MAX_DISPLAY_FILENAME_CHARS) -> str:
    """Return a client's file name cleaned for display, or "" when nothing is left.

    Keeps only the last path component, whether the client separated folders with
    "/" or "\\", so "../../etc/passwd.jpg" becomes "passwd.jpg". Drops control,
    format (bidirectional and zero-width) and unassigned characters, turns runs of
    whitespace into one space, and shortens the result to `max_chars`. The result is
    plain text, which templates escape when they show it.
    """
    if not name:
        return ""

    # Compose accents into single characters first, so a name is not cut between a
    # letter and its accent.
    text = unicodedata.normalize("NFC", str(name))

    # Folders: the last component after either separator.
    text = text.replace("\\", "/").rsplit("/", 1)[-1]

    # Characters: tabs and line breaks become spaces before the other controls go.
    text = WHITESPACE_RUN.sub(" ", text)
    text = "".join(char for char in text if unicodedata.category(char) not in DROPPED_CATEGORIES)
    text = text.strip()
    if text in ("", ".", ".."):
        return ""

    return shortened(text, max_chars=max_chars)


def shortened(text: str, *, max_chars: int) -> str:
    """Return `text` cut to `max_chars` characters, keeping a short extension whole."""
    if len(text) <= max_chars:
        return text
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) + 1 > MAX_KEPT_EXTENSION_CHARS:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    keep = max_chars - len(suffix) - len(ELLIPSIS)
    return stem[:keep].rstrip() + ELLIPSIS + suffix
