"""Screenshots for the guides in docs/, made by the browser tests from the real app.

`shoot(page, name)` saves docs/images/<name>.png when STUDYVISIT_UPDATE_SCREENSHOTS=1 (run the
browser tests that way to refresh them, then commit the images), and otherwise checks that the
guide's picture exists, so a test renamed or removed without its picture fails instead of leaving
a guide pointing at nothing. The screenshot itself is always taken, so it cannot fail silently.
"""

import os
from pathlib import Path

from playwright.sync_api import Page

IMAGES = Path(__file__).parent.parent / "docs" / "images"


def shoot(page: Page, name: str) -> Path:
    """Take the screenshot `name` (viewport only: a phone's screen); returns the guide's file."""
    picture = page.screenshot(animations="disabled", caret="hide")
    assert picture.startswith(b"\x89PNG"), "Chromium returned no PNG"
    target = IMAGES / f"{name}.png"
    if os.environ.get("STUDYVISIT_UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(exist_ok=True)
        target.write_bytes(picture)
    assert target.is_file(), f"{target} is missing: run with STUDYVISIT_UPDATE_SCREENSHOTS=1 and commit it"
    return target
