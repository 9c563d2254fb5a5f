"""Id and format patterns match whole strings: no trailing newline slips through `$`.

Python's `$` matches at the end *or just before a final newline*, and msgspec and Litestar check
patterns with `re.search`, so `^[0-9a-f]{64}$` accepts a hash followed by "\\n" (a file name with
a newline in it) and a note id "uuid\\n". Two guards: every regex literal in the code base is read
with the regex parser and may not end on a bare `$`; and every pattern the wire types declare is
tried on a valid value with a newline appended.
"""

import ast
import hashlib
import re
import re._constants as sre
import re._parser as sre_parse
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.common
from schemas.sync import FeedbackPutArgs, NotePutArgs, PushRequest
from tests.conftest import Seeded
from tests.sync_helpers import G1_VISIT, PROBLEM, Client, feedback_put, note_put, push, scalar, uid

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "sync", "server")
RE_FUNCTIONS = frozenset({"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"})
NEWLINE = sre_parse.parse(r"\n")[0]


def regex_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals used as regexes: arguments of ``re.*`` calls and ``pattern=`` keywords."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in RE_FUNCTIONS and getattr(func.value, "id", "") == "re":
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg == "pattern" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append((node.lineno, value.value))
    return found


def bare_end_anchors(pattern: str) -> int:
    """How many `$` in a pattern may match before a trailing newline (not followed by ``(?!\\n)``)."""

    def walk(items: list[tuple[Any, Any]]) -> int:
        count = 0
        for i, (op, av) in enumerate(items):
            if op is sre.AT and av is sre.AT_END:
                following = items[i + 1] if i + 1 < len(items) else None
                closed = following is not None and following[0] is sre.ASSERT_NOT and list(following[1][1]) == [NEWLINE]
                count += not closed
            elif op is sre.SUBPATTERN:
                count += walk(list(av[-1]))
            elif op is sre.BRANCH:
                count += sum(walk(list(branch)) for branch in av[1])
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
                count += walk(list(av[2]))
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                count += walk(list(av[1]))
        return count

    return walk(list(sre_parse.parse(pattern)))


@pytest.mark.parametrize(
    ("pattern", "bare"),
    [
        (r"^[0-9a-f]{64}$", 1),
        (r"^(a|b$)", 1),
        (r"^x\Z", 0),
        (r"^x$(?!\n)", 0),
        (schemas.common.full_match("a|b"), 0),
        (r"price: \$5", 0),
    ],
)
def test_the_anchor_check_tells_a_bare_dollar_from_a_full_match(pattern: str, bare: int) -> None:
    assert bare_end_anchors(pattern) == bare


def test_no_regex_in_the_code_base_ends_on_a_bare_dollar() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {pattern!r}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, pattern in regex_literals(ast.parse(path.read_text(encoding="utf-8")))
        if bare_end_anchors(pattern)
    ]
    assert not offenders, "use \\Z, re.fullmatch or schemas.common.full_match:\n" + "\n".join(offenders)


# Every pattern the wire declares, once, in schemas/ (each constant named *_PATTERN).
DECLARED = {name: value for name, value in vars(schemas.common).items() if name.endswith("_PATTERN")}


def test_the_wire_patterns_are_declared_once_in_schemas() -> None:
    # routes and storage import these; a second literal copy elsewhere would drift.
    assert set(DECLARED) >= {"SLUG_PATTERN", "UUID_PATTERN", "LANGUAGE_TAG_PATTERN", "SHA256_PATTERN"}
    literals = {
        pattern
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for _, pattern in regex_literals(ast.parse(path.read_text(encoding="utf-8")))
    }
    for name, pattern in DECLARED.items():
        body = pattern.removeprefix("^(?:").removesuffix(")$(?!\\n)")
        assert not any(body in literal for literal in literals), name


@pytest.mark.parametrize("name", sorted(DECLARED))
@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_declared_pattern_refuses_any_valid_value_with_a_newline_after_it(name: str, data: st.DataObject) -> None:
    pattern = DECLARED[name]
    value = data.draw(st.from_regex(re.compile(pattern), fullmatch=True))
    assert re.search(pattern, value)  # msgspec's own check
    assert re.search(pattern, value + "\n") is None
    assert re.search(pattern, "\n" + value) is None


@pytest.mark.parametrize(
    ("wire_type", "args"),
    [
        pytest.param(NotePutArgs, {"id": uid(1) + "\n", "visit_id": G1_VISIT}, id="note-id"),
        pytest.param(NotePutArgs, {"id": uid(1), "visit_id": G1_VISIT + "\n"}, id="visit-slug"),
        pytest.param(FeedbackPutArgs, {"id": uid(1), "visit_id": G1_VISIT, "answers": {"overall\n": 4}}, id="answer"),
        pytest.param(
            NotePutArgs,
            {
                "id": uid(1),
                "visit_id": G1_VISIT,
                "attachments": [{"sha256": "a" * 64 + "\n", "media_type": "image/png", "bytes": 1}],
            },
            id="sha256",
        ),
    ],
)
def test_decoding_refuses_an_id_with_a_trailing_newline(wire_type: type[msgspec.Struct], args: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(args, wire_type)


def test_push_with_a_client_id_ending_in_a_newline_is_refused() -> None:
    body = {"client_id": str(uuid.UUID(int=7)) + "\n", "protocol": 1, "mutations": []}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, PushRequest)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(note_put(1, uid(1) + "\n", body="x"), id="note-id-newline"),
        pytest.param(feedback_put(1, uid(1) + "\n", rating=4), id="feedback-id-newline"),
        pytest.param(note_put(1, uid(1), visit_id=G1_VISIT + "\n"), id="visit-id-newline"),
    ],
)
def test_pushed_id_with_a_trailing_newline_is_rejected_and_stores_nothing(
    client: Client, seeded: Seeded, bad: dict[str, Any]
) -> None:
    result = push(client, seeded.headers("participant", group="G1"), [bad])
    [rejected] = result["results"]
    assert rejected["status"] == "rejected"
    assert rejected["error"]["type"] == PROBLEM + "invalid-mutation"
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == 0
    assert scalar(seeded, "SELECT COUNT(*) FROM feedback") == 0


def test_pull_with_a_client_id_ending_in_a_newline_is_refused(client: Client, seeded: Seeded) -> None:
    response = client.get(
        "/api/v1/events/turin-sse-2025/sync/pull",
        params={"client_id": uid(3) + "\n"},
        headers=seeded.headers("participant", group="G1"),
    )
    assert response.status_code == 400, response.text


def test_a_blob_hash_ending_in_an_encoded_newline_is_refused_and_names_no_file(client: Client, seeded: Seeded) -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(64)
    digest = hashlib.sha256(data).hexdigest()
    headers = {**seeded.headers("participant", group="G1"), "Content-Type": "image/png"}
    response = client.put(f"/api/v1/events/turin-sse-2025/blobs/{digest}%0A", content=data, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    names = [p.name for p in seeded.path.parent.rglob("*")]
    assert not any("\n" in name for name in names), names
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 0
