"""Install to the home screen (docs/field-app.md): Chromium itself judges the app installable."""

from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser_app import ARGS, CHROMIUM, Web


def test_chromium_finds_the_app_installable_once_signed_in(web: Web, tmp_path: Path) -> None:
    # A persistent profile: Chromium never offers to install from an incognito one (Playwright's contexts).
    assert Path(CHROMIUM).is_file(), f"Chromium is missing ({CHROMIUM}): apt-get install chromium"
    with sync_playwright() as playwright:
        ctx = playwright.chromium.launch_persistent_context(tmp_path / "profile", executable_path=CHROMIUM, args=ARGS)
        try:
            page = ctx.new_page()
            page.goto(web.invitation("p-wanjiru-kamau"))
            page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=30_000)
            cdp = ctx.new_cdp_session(page)
            assert cdp.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}
            manifest = cdp.send("Page.getAppManifest")
            assert manifest["errors"] == []
            assert manifest["url"] == f"{web.server.url}/app/manifest.webmanifest"
        finally:
            ctx.close()
