"""The README's tour, pasted into a shell as a new user would, against ``studyvisit demo`` on a real port.

Only what truly differs on a test machine is changed in the text: the tokens the demo printed
replace the ``sv_...`` placeholders, and the free port the demo was given replaces 8000 (another
process may hold 8000). Everything else (URLs, ``since`` times, ids, commands) runs as written,
with curl and the installed ``studyvisit``; a ``json`` block after a command is what that command
prints (every key and value shown must be in it, and a list has exactly the items shown, so
"exactly the move above" is checked), a ``text`` block lines it prints.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from doc_examples import FENCE, contains
from PIL import Image
from playwright.sync_api import Browser, expect

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ROLE_TOKEN = {"organizer": "ORG_TOKEN", "host": "HOST_TOKEN", "participant": "TOKEN"}
MARK = "@@readme-block@@"


class Block:
    """A shell block of the tour and what its output must show."""

    def __init__(self, script: str, shown_kind: str, shown: str) -> None:
        self.script = script
        self.shown_kind = shown_kind
        self.shown = shown


def tour_blocks() -> list[Block]:
    """The ``sh`` blocks of the README's Tour section, each with the ``json``/``text`` block right after it."""
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## Tour") : text.index("\n## ", text.index("## Tour") + 1)]
    fences = [(m[1], m[2]) for m in FENCE.finditer(tour)]
    blocks = []
    for n, (kind, content) in enumerate(fences):
        if kind == "sh":
            after = fences[n + 1] if n + 1 < len(fences) and fences[n + 1][0] in ("json", "text") else ("", "")
            blocks.append(Block(content, *after))
    return blocks


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """``studyvisit demo --port N`` serving a fresh database; its port, the tokens it printed (by variable)
    and the invitation links it printed (by role)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "demo", "--port", str(port), "--db", str(tmp_path / "demo.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        tokens: dict[str, str] = {}
        links: dict[str, str] = {}
        role = ""
        for line in process.stdout:  # "organizer    Marta Bianchi (org-marta)" then "token: sv_..."
            if line.startswith("Try: curl"):
                break
            if match := re.match(r"^(organizer|host|participant)\s", line):
                role = match[1]
            elif match := re.match(r"^\s+token: (sv_\S+)", line):
                tokens[ROLE_TOKEN[role]] = match[1]
            elif match := re.match(r"^\s+app:\s+(\S+)", line):
                links[role] = match[1]
        assert set(tokens) == set(ROLE_TOKEN.values()), tokens
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo did not start serving"
                time.sleep(0.1)
        yield port, tokens, links
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def shows(actual: object, shown: object) -> bool:
    """``contains``, with lists of exactly the items shown (each item a part of the one it matches)."""
    if isinstance(shown, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(shown)
            and all(shows(a, s) for a, s in zip(actual, shown, strict=True))
        )
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(k in actual and shows(actual[k], v) for k, v in shown.items())
    return contains(actual, shown)


def as_pasted(script: str, port: int, tokens: dict[str, str]) -> str:
    """The block with the demo's tokens pasted over the placeholders and the demo's port for 8000."""
    for name, token in tokens.items():
        script = re.sub(rf"^{name}=sv_\.\.\.", f"{name}={token}", script, flags=re.MULTILINE)
    assert "sv_..." not in script, script
    return script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def test_the_readme_tour_runs_as_written_and_prints_what_it_shows(
    demo: tuple[int, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    port, tokens, _ = demo
    blocks = tour_blocks()
    assert len(blocks) >= 5
    assert sum(1 for b in blocks if b.shown_kind) >= 3
    # The reader's folder: the clone's .venv, and the photo the tour attaches.
    home = tmp_path / "clone"
    home.mkdir()
    (home / ".venv").symlink_to(Path(sys.executable).parent.parent)
    photo = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(photo, "JPEG")
    (home / "poster.jpg").write_bytes(photo.getvalue())
    script = "set -e\n" + "".join(f"echo '{MARK}'\n{as_pasted(b.script, port, tokens)}" for b in blocks)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=home,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
        env={**os.environ, "STUDYVISIT_FIELD_DIR": str(tmp_path / "field")},  # not the tester's own ~/.studyvisit-field
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    outputs = result.stdout.split(MARK + "\n")[1:]
    assert len(outputs) == len(blocks)
    for block, output in zip(blocks, outputs, strict=True):
        if block.shown_kind == "json":
            assert shows(json.loads(output), json.loads(block.shown)), (block.script, output)
        elif block.shown_kind == "text":
            for line in block.shown.strip("\n").splitlines():
                assert line in output.splitlines(), (block.script, line, output)


def test_the_tour_opens_the_field_app_from_the_participants_printed_link(
    demo: tuple[int, dict[str, str], dict[str, str]], browser: Browser
) -> None:
    port, tokens, links = demo
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## Tour") : text.index("\n## ", text.index("## Tour") + 1)]
    shown = re.findall(r"participant's `app:` link the demo printed\s+\(`(http://\S+)`\)", tour)
    assert shown == ["http://127.0.0.1:8000/app/#t=sv_..."]
    link = as_pasted(shown[0].replace("sv_...", tokens["TOKEN"]), port, {})
    assert links["participant"] == link
    itinerary = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/events/turin-sse-2025/itinerary",
        headers={"Authorization": f"Bearer {tokens['TOKEN']}"},
    ).json()
    ctx = browser.new_context(timezone_id="Europe/Rome", locale="en-GB", viewport={"width": 360, "height": 740})
    try:
        page = ctx.new_page()
        page.goto(link)
        expect(page.locator("li.visit")).to_have_count(len(itinerary["items"]))
        expect(page.get_by_role("status")).to_contain_text("Last synced")
        assert tokens["TOKEN"] not in page.url
    finally:
        ctx.close()
