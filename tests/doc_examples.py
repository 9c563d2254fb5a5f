"""The curl examples of a Markdown document, as tests: read them, send them as curl would, compare the answers.

An example is a ``sh`` block starting with ``curl``, then an ``http`` block (the status line and,
optionally, headers; ``…`` in a header value stands for anything), then optionally a ``json`` block
(a part of the answer: every key and value shown must be in it, a list shows some of its items in
order, ``[]`` is an empty list) or a ``csv`` block (the header line, then rows that must be in the
answer; ``…`` in a row stands for anything).
"""

import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import msgspec

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
VARIABLE = re.compile(r"\$([A-Z][A-Z0-9_]*)")
# `-H "If-Match: $ETAG"` asks for the ETag of what the URL answers now, which no guide can know.
ETAG = "$ETAG"
CONDITIONAL = ("if-match", "if-none-match")
# A 204 or 304 has no body (RFC 9110 §15.3.5, §15.4.5): a server sending one would be a bug.
EMPTY_STATUSES = (204, 304)


class Example(msgspec.Struct, frozen=True):
    """A ``curl`` block of a document and the answer shown after it."""

    where: str
    command: str
    status: int
    headers: dict[str, str]
    json: Any = None
    csv: str | None = None


class CurlRequest(msgspec.Struct, frozen=True):
    """What a curl command sends."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


def read_examples(path: Path) -> list[Example]:
    """Every curl example of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = [(m[1], m[2], f"{path.name}:{line_of(text, m.start())}") for m in FENCE.finditer(text)]
    examples = []
    for n, (kind, content, where) in enumerate(blocks):
        if kind != "sh" or not content.lstrip().startswith("curl"):
            continue
        following = [(k, c) for k, c, _ in blocks[n + 1 : n + 3]]
        if not following or following[0][0] != "http":
            raise AssertionError(f"{where}: a curl example needs an http block after it")
        status, headers = parse_http(following[0][1], where)
        shown_kind, shown = following[1] if len(following) > 1 else ("", "")
        examples.append(
            Example(
                where,
                content.strip(),
                status,
                headers,
                json=json.loads(shown) if shown_kind == "json" else None,
                csv=shown if shown_kind == "csv" else None,
            )
        )
    return examples


EXPORT = re.compile(r"^\$ export ([A-Z][A-Z0-9_]*)=(\S*)", re.MULTILINE)
# A value a reader must fill in themselves (a token they were given): the test supplies it.
PLACEHOLDER = "…"


def read_exports(path: Path) -> dict[str, str]:
    """The variables a guide's ``console`` blocks export, as written (``$ export SINCE=2025-12-09T18:00:00Z``).

    Values the reader fills in (``sv_…``, ``$(…)``) are left out: those are what a test must supply.
    """
    text = path.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in FENCE.finditer(text):
        if match[1] == "console":
            for name, value in EXPORT.findall(match[2]):
                if PLACEHOLDER not in value and "$" not in value:
                    found[name] = value
    return found


def line_of(text: str, offset: int) -> int:
    """The line number of a character of the text, from 1."""
    return text.count("\n", 0, offset) + 1


def parse_http(block: str, where: str) -> tuple[int, dict[str, str]]:
    """Status and headers of an ``http`` block: ``HTTP/1.1 200 OK``, then ``Name: value`` lines."""
    status_line, *header_lines = block.strip().splitlines()
    match = re.fullmatch(r"HTTP/[\d.]+ (\d{3})( .*)?", status_line)
    if match is None:
        raise AssertionError(f"{where}: {status_line!r} is not a status line")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(": ")
        if not sep:
            raise AssertionError(f"{where}: {line!r} is not a header")
        headers[name] = value
    return int(match[1]), headers


def parse_curl(command: str, variables: dict[str, str]) -> CurlRequest:
    """Method, URL, headers and body of a curl command, with its variables filled in (``$ETAG`` is left to `send`)."""
    program, *args = shlex.split(command)
    assert program == "curl", command
    args = [VARIABLE.sub(lambda m: substitute(m[1], variables, command), arg) for arg in args]
    # curl sends no Accept-Encoding unless told to; httpx would ask for gzip.
    method, url, headers, body = None, None, {"Accept-Encoding": "identity"}, None
    while args:
        arg = args.pop(0)
        if arg in ("-i", "-s"):
            continue
        if arg == "--compressed":
            headers["Accept-Encoding"] = "gzip"
        elif arg == "-X":
            method = args.pop(0)
        elif arg == "-H":
            name, _, value = args.pop(0).partition(": ")
            headers[name] = value
        elif arg in ("-d", "--data"):
            body = args.pop(0).encode()
        elif arg.startswith(("/", "http://", "https://")) and url is None:
            url = arg
        else:
            raise AssertionError(f"curl option {arg!r} is not understood by this test: {command}")
    if url is None:
        raise AssertionError(f"no URL in {command}")
    if body is not None and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # what curl -d sends unless told
    for name, value in headers.items():
        if ETAG in value and (name.lower() not in CONDITIONAL or value != ETAG):
            raise AssertionError(f"$ETAG is only understood as the whole If-Match or If-None-Match: {command}")
    return CurlRequest(method or ("GET" if body is None else "POST"), url, headers, body)


def substitute(name: str, variables: dict[str, str], command: str) -> str:
    """The value of ``$name``; a variable the test does not set would send a literal ``$name``."""
    if name in variables:
        return variables[name]
    if "$" + name == ETAG:
        return ETAG
    raise AssertionError(f"${name} is not set by this test: {command}")


def send(client: httpx.Client, request: CurlRequest) -> httpx.Response:
    """Send a request; an ``$ETAG`` condition gets the ETag of a GET of the same URL by the same caller."""
    headers = dict(request.headers)
    for name, value in request.headers.items():
        if value == ETAG:
            caller = {k: v for k, v in headers.items() if k.lower() in ("authorization", "accept-encoding")}
            current = client.get(request.url, headers=caller)
            assert current.status_code == 200, f"GET {request.url} for its ETag: {current.text}"
            headers[name] = current.headers["etag"]
    return client.request(request.method, request.url, headers=headers, content=request.body)


def wildcard(shown: str) -> re.Pattern[str]:
    """A pattern of a value shown with ``…`` standing for anything."""
    return re.compile(".*".join(map(re.escape, shown.split("…"))))


def contains(actual: Any, shown: Any) -> bool:
    """Whether ``shown`` is part of ``actual``: keys of objects, an ordered selection of list items; [] is empty."""
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in shown.items())
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return False
        if not shown:
            return not actual
        remaining = iter(actual)
        return all(any(contains(item, wanted) for item in remaining) for wanted in shown)
    # JSON tells true from 1, Python does not.
    return isinstance(actual, bool) == isinstance(shown, bool) and bool(actual == shown)


def check(example: Example, response: httpx.Response) -> None:
    """Assert that the response is the answer the example shows."""
    where = example.where
    assert response.status_code == example.status, (where, response.text)
    for name, value in example.headers.items():
        got = response.headers.get(name)
        assert got is not None, (where, name)
        assert wildcard(value).fullmatch(got), (where, name, got)
    if example.status in EMPTY_STATUSES:
        assert response.content == b"", (where, response.content)
    if example.json is not None:
        assert contains(response.json(), example.json), (where, response.text)
    if example.csv is not None:
        header, *rows = example.csv.strip().splitlines()
        lines = response.content.decode("utf-8-sig").split("\r\n")  # RFC 4180 ends records with CRLF
        assert lines[0] == header, (where, lines[0])
        for row in rows:
            assert any(wildcard(row).fullmatch(line) for line in lines), (where, row)


def run(client: httpx.Client, example: Example, variables: dict[str, str]) -> httpx.Response:
    """Send an example's curl command and check the answer against the one it shows."""
    response = send(client, parse_curl(example.command, variables))
    check(example, response)
    return response
