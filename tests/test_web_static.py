"""The field app's files: shipped in the package, served at /app/ under a strict CSP, small, translated."""

import gzip
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import segno
from litestar import Litestar
from litestar.testing import TestClient

from server.routes.app import represented, shell_files, tile_origin, web_root
from tests.conftest import LiveServer, make_app

WEB = Path(__file__).resolve().parent.parent / "web"
LANGUAGES = ["en", "fr", "es", "it", "ar"]
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def catalog(lang: str) -> dict[str, str]:
    result: dict[str, str] = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return result


def test_the_installed_package_finds_the_app_files_in_a_fresh_interpreter() -> None:
    # A child process, from another directory: the files come from the package, not from the checkout's cwd.
    code = "from server.routes.app import web_root; r = web_root(); print(r); print((r / 'index.html').is_file())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    root, found = out.split()
    assert found == "True"
    assert (Path(root) / "sw.js").is_file()


def test_package_data_declares_every_app_file() -> None:
    text = (WEB.parent / "pyproject.toml").read_text()
    assert '"web*"' in text
    assert 'web = ["**/*"]' in text


@pytest.mark.parametrize("lang", LANGUAGES[1:])
def test_every_catalog_has_every_english_key_with_the_same_placeholders(lang: str) -> None:
    english, other = catalog("en"), catalog(lang)
    assert set(other) == set(english)
    for key, text in english.items():
        assert set(PLACEHOLDER.findall(other[key])) == set(PLACEHOLDER.findall(text)), key
        assert other[key].strip(), key


def test_every_message_the_code_asks_for_is_in_the_catalog() -> None:
    source = "\n".join(p.read_text() for p in (WEB / "js").rglob("*.js"))
    asked = set(re.findall(r'\bt\("([a-z_.]+)"', source))
    assert asked
    assert asked <= set(catalog("en")), asked - set(catalog("en"))


def test_the_app_shell_is_under_150_kb_gzipped() -> None:
    total = sum(len(gzip.compress((web_root() / (f or "index.html")).read_bytes(), 9)) for f in shell_files(web_root()))
    total += len(gzip.compress((web_root() / "sw.js").read_bytes(), 9))
    assert total < 150 * 1024, total


def test_the_app_has_no_inline_script_or_style() -> None:
    html = (WEB / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None


@pytest.fixture
def app_client(seeded: object, db_path: Path) -> TestClient[Litestar]:
    return TestClient(app=make_app(db_path, tile_url="https://tiles.example.org/{z}/{x}/{y}.png"))


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/app/", "text/html; charset=utf-8"),
        ("/app/js/main.js", "text/javascript; charset=utf-8"),
        ("/app/css/app.css", "text/css; charset=utf-8"),
        ("/app/manifest.webmanifest", "application/manifest+json"),
        ("/app/i18n/ar.json", "application/json"),
        ("/app/icons/icon.svg", "image/svg+xml"),
    ],
)
def test_app_files_are_served_without_a_token_under_a_strict_csp(
    app_client: TestClient[Litestar], path: str, media_type: str
) -> None:
    with app_client as client:
        response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    csp = {d.split()[0]: d.split()[1:] for d in response.headers["content-security-policy"].split("; ")}
    assert csp["script-src"] == ["'self'"]
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'", "https://tiles.example.org"]
    assert "https://tiles.example.org" in csp["img-src"]
    assert response.headers["x-content-type-options"] == "nosniff"


def raw_get(client: httpx.Client, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """A GET and its body exactly as it came over the wire (httpx would decode the gzip)."""
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


@pytest.mark.parametrize(
    "path", ["/app/", "/app/sw.js", "/app/js/main.js", "/app/vendor/leaflet/leaflet.js", "/app/i18n/ar.json"]
)
def test_the_shell_is_sent_gzipped_to_a_client_that_takes_it_with_the_same_headers_and_a_304(
    live_server: LiveServer, path: str
) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        plain, plain_bytes = raw_get(client, path, {"Accept-Encoding": "identity"})
        zipped, wire = raw_get(client, path, {"Accept-Encoding": "br, gzip;q=0.8"})
        revalidated = [
            raw_get(client, path, {"Accept-Encoding": coding, "If-None-Match": r.headers["etag"]})[0]
            for r in (plain, zipped)
            for coding in ("identity", "gzip")
        ]
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    # A real decoder gives back the very bytes of the plain answer, at well under half the size.
    assert gzip.decompress(wire) == plain_bytes
    assert len(wire) < len(plain_bytes) / 2
    assert int(zipped.headers["content-length"]) == len(wire)
    assert plain.headers["etag"] != zipped.headers["etag"]
    for response in (plain, zipped, *revalidated):
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["content-security-policy"] == plain.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert zipped.headers["content-type"] == plain.headers["content-type"]
    assert "script-src 'self'" in plain.headers["content-security-policy"]
    # Either tag revalidates either representation: the same file.
    assert [r.status_code for r in revalidated] == [304, 304, 304, 304]
    assert plain.headers.get("service-worker-allowed") == ("/app/" if path == "/app/sw.js" else None)
    assert zipped.headers.get("service-worker-allowed") == plain.headers.get("service-worker-allowed")


def test_each_shell_file_is_compressed_once_not_per_request(app_client: TestClient[Litestar]) -> None:
    with app_client as client:
        client.get("/app/js/model.js", headers={"Accept-Encoding": "gzip"})
        before = represented.cache_info()
        answers = [client.get("/app/js/model.js", headers={"Accept-Encoding": "gzip"}) for _ in range(3)]
        after = represented.cache_info()
    assert {a.headers["content-encoding"] for a in answers} == {"gzip"}
    assert (after.misses, after.hits) == (before.misses, before.hits + 3)


@pytest.mark.parametrize(
    ("tile_url", "origin"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}{r}.png", "https://*.tile.example.org"),
        ("http://10.0.0.5:8080/tiles/{z}/{x}/{y}.png", "http://10.0.0.5:8080"),
        ("/tiles/{z}/{x}/{y}.png", ""),
        ("", ""),
    ],
)
def test_the_csp_allows_the_tile_host_and_each_of_its_subdomains(tile_url: str, origin: str) -> None:
    assert tile_origin(tile_url) == origin


def test_the_default_tile_host_is_openstreetmap(seeded: object, db_path: Path) -> None:
    with TestClient(app=make_app(db_path)) as client:
        csp = client.get("/app/").headers["content-security-policy"]
    assert "connect-src 'self' https://tile.openstreetmap.org;" in csp


def test_app_without_slash_redirects_to_the_app(app_client: TestClient[Litestar]) -> None:
    with app_client as client:
        response = client.get("/app", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (308, "/app/")


@pytest.mark.parametrize(
    "path", ["/app/nothing.js", "/app/../server/app.py", "/app/%2e%2e/pyproject.toml", "/app/__init__.py"]
)
def test_files_outside_the_shell_are_not_found(app_client: TestClient[Litestar], path: str) -> None:
    with app_client as client:
        response = client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text


def test_the_service_worker_lists_the_whole_shell_and_changes_with_it(app_client: TestClient[Litestar]) -> None:
    with app_client as client:
        response = client.get("/app/sw.js")
    assert response.status_code == 200
    assert response.headers["service-worker-allowed"] == "/app/"
    assert response.headers["cache-control"] == "no-cache"
    match = re.search(r"const SHELL = /\*\* @type \{any\} \*/ \((\{.*?\})\);", response.text)
    assert match, "the shell manifest is filled in"
    manifest = json.loads(match.group(1))
    on_disk = {
        p.relative_to(WEB).as_posix() for p in WEB.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc", ".md"}
    }
    # Every file the app uses, vendored libraries' scripts and styles included; not their licenses.
    licenses = {p for p in on_disk if p.startswith("vendor/") and Path(p).name.startswith("LICENSE")}
    assert {"vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.css"} <= on_disk
    assert licenses
    assert {f or "index.html" for f in manifest["files"]} == on_disk - {"sw.js"} - licenses
    assert re.fullmatch(r"[0-9a-f]{16}", manifest["version"])
    assert manifest["tiles"] == "https://tiles.example.org/{z}/{x}/{y}.png"


@pytest.mark.parametrize(
    "tile_url",
    ["https://tiles.example.org/{z}/{x}/{y}.png", 'https://t.example.org/{z}/{x}/{y}.png?key=a&b="c"', ""],
)
def test_the_app_gets_the_tile_url_in_its_page_and_a_new_one_updates_the_shell(
    seeded: object, db_path: Path, tile_url: str
) -> None:
    with TestClient(app=make_app(db_path, tile_url=tile_url)) as client:
        page = client.get("/app/").text
        worker = client.get("/app/sw.js").text
    metas = re.findall(r'<meta name="tile-url" content="([^"]*)">', page)
    assert [html.unescape(m) for m in metas] == [tile_url]
    assert "__TILE_URL__" not in page
    with TestClient(app=make_app(db_path, tile_url="https://other.example.org/{z}/{x}/{y}.png")) as client:
        other = client.get("/app/sw.js").text
    version = re.compile(r'"version":"([0-9a-f]{16})"')
    assert version.findall(worker) != version.findall(other)


def test_accounts_add_prints_the_invitation_link_at_the_public_url(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    run = [sys.executable, "-m", "server.cli"]
    subprocess.run([*run, "demo", "--no-serve", "--db", db], capture_output=True, check=True)
    env = {**os.environ, "STUDYVISIT_PUBLIC_URL": "https://visit.example.org"}
    added = [*run, "accounts", "add", "--db", db, "--event", "turin-sse-2025", "--name", "Lê Văn Anh"]
    out = subprocess.run(
        [*added, "--role", "participant", "--group", "G1"], capture_output=True, text=True, check=True, env=env
    ).stdout
    token = re.findall(r"token: (\S+)", out)[0]
    assert re.findall(r"app:\s+(\S+)", out) == [f"https://visit.example.org/app/#t={token}"]


def test_the_invitation_link_is_printed_for_each_demo_account(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", "--no-serve", "--port", "8123", "--db", str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tokens = re.findall(r"token: (\S+)", out)
    links = re.findall(r"app:\s+(\S+)", out)
    assert len(tokens) == 3
    assert links == [f"http://127.0.0.1:8123/app/#t={t}" for t in tokens]


def test_ci_and_the_readme_install_chromium_before_running_the_tests() -> None:
    readme = (WEB.parent / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start") : readme.index("## Tour")]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2, "the quick start stays two commands"
    ci = (WEB.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    install = "(command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)) && "
    assert commands[1].startswith(install)
    assert ci.replace("pip install -q ", "pip install ") == commands[1]


def read_terminal_qr(text: str) -> list[list[bool]]:
    """The dark modules of a compact terminal QR code: each character is two rows (upper, lower),
    a full block light on both, a space dark on both, half blocks light on the half they fill."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        rows.append([c not in "█▀" for c in line])
        rows.append([c not in "█▄" for c in line])
    return rows


def test_qr_prints_each_invitation_link_as_a_code_that_reads_back_as_the_link(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "demo",
            "--no-serve",
            "--qr",
            "--port",
            "8123",
            "--db",
            str(tmp_path / "d.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    links = re.findall(r"app:\s+(\S+)", out)
    codes = re.findall(r"app:\s+\S+\n((?:[█▀▄ ]+\n)+)", out)
    assert len(links) == len(codes) == 3
    for link, code in zip(links, codes, strict=True):
        expected = [[bool(m) for m in row] for row in segno.make(link, error="m").matrix_iter(border=4)]
        shown = read_terminal_qr(code)
        assert shown[: len(expected)] == expected
        assert len(shown) - len(expected) in (0, 1)  # an odd row count leaves half of the last line unused


def imported_modules(module: Path) -> set[str]:
    """Every module ``module`` imports statically, and theirs: paths relative to web/."""
    found: set[str] = set()
    todo = [module]
    while todo:
        source = todo.pop().resolve()
        for spec in re.findall(r'^\s*import\s[^;]*?\bfrom\s+"(\.{1,2}/[^"]+)"', source.read_text(), re.M):
            target = (source.parent / spec).resolve()
            name = target.relative_to(WEB.resolve()).as_posix()
            if name not in found:
                found.add(name)
                todo.append(target)
    return found


def test_index_preloads_every_module_the_app_imports_so_a_first_visit_fetches_them_at_once() -> None:
    html = (WEB / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', html))
    assert preloaded == imported_modules(WEB / "js" / "main.js")
    assert '<link rel="preload" href="i18n/en.json" as="fetch" crossorigin>' in html  # always loaded, as fallback
