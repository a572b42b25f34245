"""A teacher signs in through OpenID Connect (`st.login`) in a real browser, against a real identity provider.

tests/oidc_provider.py runs on a loopback port; a real `streamlit run` reads a throwaway secrets
file (its `[auth]` section points at that provider; `[teacher] emails` lists who is a teacher),
never the checkout's .streamlit/. Chromium presses the sign-in button, goes through the provider
and back, and the teacher's pages appear; signing out goes through the provider's end-session
endpoint and takes them away; an account not on the list is refused, in Chinese.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.test_browser import (  # importing it skips this module too, loudly, without Chromium or Playwright
    CHROMIUM,
    CHROMIUM_ARGS,
    NAV_LINK,
    TIMEOUT_MS,
    VIEWPORT,
    Browser,
    Locator,
    Page,
    StreamlitServer,
    expect,
    open_app,
    streamlit_server,
    sync_playwright,
    ui_strings,
    wait_for_app_idle,
    worker_suffix,
)
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.browser
TEACHER = {"sub": "teacher-1", "email": "Teacher@School.example", "name": "Ada Teacher"}  # case differs from the list
STUDENT = {"sub": "student-7", "email": "student@school.example", "name": "Sam Student"}
EMAILS = ["teacher@school.example", "other.teacher@school.example"]
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'
NAV_VIEW_BUTTON = '[data-testid="stSidebarNavViewButton"]'
SECRETS = """\
[teacher]
emails = {emails}

[auth]
redirect_uri = "http://localhost:{{port}}/oauth2callback"
cookie_secret = "oidc-browser-test-cookie-secret"
client_id = "{client_id}"
client_secret = "{client_secret}"
server_metadata_url = "{issuer}/.well-known/openid-configuration"
"""


@dataclass(frozen=True)
class Setup:
    """The provider, and the app as the browser reaches it (http://localhost:<port>, the redirect_uri's origin)."""

    provider: OidcProvider
    server: StreamlitServer
    url: str


@pytest.fixture(scope="module")
def setup(artifacts: Path) -> Iterator[Setup]:
    """Start the provider, then a server whose only secrets are a temporary file (STREAMLIT_SECRETS_FILES).

    No teacher password: the OIDC button is the only way in. `{port}` in redirect_uri is
    Streamlit's own placeholder for server.port, so the file is written before the port is known.
    """
    folder = Path(tempfile.mkdtemp(prefix="oidc_"))
    provider = OidcProvider(client_id="torchlab-browser-test", user=dict(TEACHER))
    with provider.serve(), pytest.MonkeyPatch.context() as patch:
        secrets_file = folder / "secrets.toml"
        secrets_file.write_text(
            SECRETS.format(
                emails=json.dumps(EMAILS),  # a TOML array of strings
                client_id=provider.client_id,
                client_secret=provider.client_secret,
                issuer=provider.issuer,
            ),
            encoding="utf-8",
        )
        (folder / "data").mkdir()
        patch.setenv("STREAMLIT_SECRETS_FILES", str(secrets_file))  # replaces ~/.streamlit and ./.streamlit secrets
        patch.setenv("TORCHLAB_DATA_DIR", str(folder / "data"))
        patch.setenv("TORCHLAB_LINK_SECRET", "oidc-browser-test-link-secret")
        patch.delenv("TORCHLAB_TEACHER_PASSWORD_HASH", raising=False)
        patch.delenv("TORCHLAB_DATABASE_URL", raising=False)
        try:
            with streamlit_server(artifacts / f"oidc-server{worker_suffix()}.log") as server:
                port = urlsplit(server.url).port
                url = f"http://localhost:{port}"
                provider.redirect_uris.add(f"{url}/oauth2callback")  # registered with the provider, as a school would
                yield Setup(provider, server, url)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fresh(setup: Setup) -> Setup:
    """The set-up with the provider's records cleared and the server checked alive."""
    setup.server.assert_alive()
    for record in (setup.provider.authorizations, setup.provider.token_requests, setup.provider.logouts):
        record.clear()
    setup.provider.errors.clear()
    return setup


@pytest.fixture
def new_page(browser: Browser, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Page]]:
    """Return a maker of pages, each in a fresh browser context (no cookies: nobody signed in) with this locale.

    When the test fails, each page's screenshot goes to test-artifacts/failures/.
    """
    pages: list[Page] = []

    def make(locale: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT, locale=locale)  # type: ignore[arg-type]
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        pages.append(context.new_page())
        return pages[-1]

    yield make
    report = getattr(request.node, "rep_call", None)
    for i, page in enumerate(pages):
        if report is not None and report.failed:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            try:
                page.screenshot(path=str(artifacts / "failures" / f"{name}-{i}.png"), full_page=True)
            except Exception as e:  # the page may be gone; the failure itself matters more
                print(f"could not save the failure screenshot: {e}")
        page.context.close()


def nav_entry(page: Page, label: str) -> Locator:
    """The sidebar navigation's entry with this label, once the whole navigation shows.

    Streamlit folds a long navigation after its first entries ("View 4 more"), and the folded
    entries are not in the page at all: unfold it first, or a missing entry proves nothing.
    """
    unfold = page.locator(NAV_VIEW_BUTTON)
    expect(page.locator(NAV_LINK).first).to_be_visible()
    if unfold.count() and "more" in unfold.inner_text():
        unfold.click()
        expect(unfold).not_to_contain_text("more")
    return page.locator(NAV_LINK).filter(has_text=re.compile(f"^{re.escape(label)}$"))


def sign_in_through_provider(page: Page, setup: Setup, label: str) -> None:
    """Press the OIDC button on the teacher page; wait until the provider has sent the browser back to the app."""
    button = page.locator(MAIN).get_by_role("button", name=label)
    expect(button).to_be_visible()
    button.click()
    # /auth/login -> the provider's /authorize -> /oauth2callback -> the app's home page, a new session.
    expect_back_home(page, setup)


def expect_back_home(page: Page, setup: Setup) -> None:
    """Wait until the browser is back on the app's home page after a round trip through the provider."""
    page.wait_for_url(re.compile(rf"^{re.escape(setup.url)}/(\?.*)?$"), timeout=TIMEOUT_MS)
    wait_for_app_idle(page)
    assert not setup.provider.errors, setup.provider.errors


def test_a_teacher_signs_in_through_the_provider_and_out_again(
    new_page: Callable[[str], Page], fresh: Setup, artifacts: Path
) -> None:
    en = ui_strings("en")
    page = new_page("en-US")
    open_app(page, fresh.url, "/teacher?lang=en")
    # Not signed in: the refusal, the OIDC button, no password form (none configured), no teacher pages listed.
    expect(page.locator(MAIN).get_by_text(en["teacher.only"])).to_be_visible()
    expect(page.get_by_label(en["teacher.password"])).to_have_count(0)
    expect(nav_entry(page, en["nav.teacher"])).to_be_visible()  # the classroom section is unfolded
    expect(nav_entry(page, en["nav.links"])).to_have_count(0)
    expect(nav_entry(page, en["nav.dashboard"])).to_have_count(0)

    sign_in_through_provider(page, fresh, en["teacher.sign_in_oidc"])

    # What Streamlit sent the provider: the registered redirect URI, a state, a nonce and S256 PKCE.
    [authorization] = fresh.provider.authorizations
    assert authorization["client_id"] == fresh.provider.client_id
    assert authorization["redirect_uri"] == f"{fresh.url}/oauth2callback"
    assert authorization["response_type"] == "code"
    assert set(authorization["scope"].split()) >= {"openid", "email"}
    assert authorization["state"] and authorization["nonce"]
    assert authorization["code_challenge_method"] == "S256" and authorization["code_challenge"]
    [token_request] = fresh.provider.token_requests
    assert token_request["grant_type"] == "authorization_code" and token_request["code_verifier"]
    assert token_request["client_id"] == fresh.provider.client_id

    # Back on the home page, signed in (a new session that read the identity cookie): the teacher's pages are listed.
    expect(nav_entry(page, en["nav.links"])).to_be_visible()
    expect(nav_entry(page, en["nav.dashboard"])).to_be_visible()
    open_app(page, fresh.url, "/teacher?lang=en")
    main = page.locator(MAIN)
    expect(main.locator("h1").first).to_have_text(en["teacher.title"])
    expect(main.get_by_role("link", name=en["nav.links"])).to_be_visible()
    expect(main.get_by_role("link", name=en["nav.dashboard"])).to_be_visible()
    expect(main.get_by_text(en["teacher.new_class"])).to_be_visible()
    expect(main.get_by_text(en["teacher.only"])).to_have_count(0)
    page.screenshot(path=str(artifacts / "oidc-teacher-signed-in.png"), full_page=True)
    # The link builder opens for the signed-in teacher (no refusal there either).
    main.get_by_role("link", name=en["nav.links"]).click()
    wait_for_app_idle(page)
    expect(page.locator(MAIN).locator("h1").first).to_have_text(en["links.title"])
    expect(page.locator(MAIN).get_by_text(en["teacher.only"])).to_have_count(0)

    # Signing out: st.logout goes through the provider's end-session endpoint and back home, signed out.
    open_app(page, fresh.url, "/teacher?lang=en")
    page.locator(SIDEBAR).get_by_role("button", name=en["teacher.sign_out"]).click()
    expect_back_home(page, fresh)
    [logout] = fresh.provider.logouts
    assert logout["client_id"] == fresh.provider.client_id
    assert logout["post_logout_redirect_uri"] == f"{fresh.url}/oauth2callback"
    assert logout.get("id_token_hint"), "Streamlit sends the ID token it got as a hint"
    expect(nav_entry(page, en["nav.links"])).to_have_count(0)
    cookies = {c["name"] for c in page.context.cookies(fresh.url)}
    assert not {name for name in cookies if name.startswith("_streamlit_user")}, cookies
    open_app(page, fresh.url, "/teacher?lang=en")
    expect(page.locator(MAIN).get_by_text(en["teacher.only"])).to_be_visible()
    expect(page.locator(MAIN).get_by_role("button", name=en["teacher.sign_in_oidc"])).to_be_visible()
    expect(page.locator(MAIN).get_by_role("link", name=en["nav.links"])).to_have_count(0)


# A teacher's address that the provider says it has not verified is refused like any other account.
UNVERIFIED = {**TEACHER, "sub": "teacher-unverified", "email_verified": False}


@pytest.mark.parametrize("account", [STUDENT, UNVERIFIED], ids=["not-on-the-list", "unverified-email"])
def test_an_account_not_on_the_teachers_list_is_refused_in_chinese(
    new_page: Callable[[str], Page], fresh: Setup, artifacts: Path, account: dict[str, object]
) -> None:
    zh = ui_strings("zh")
    fresh.provider.user = dict(account)
    try:
        page = new_page("zh-CN")  # the language comes from the browser again after the round trip
        open_app(page, fresh.url, "/teacher?lang=zh")
        sign_in_through_provider(page, fresh, zh["teacher.sign_in_oidc"])
        assert len(fresh.provider.token_requests) == 1  # the provider did sign the student in
        expect(nav_entry(page, zh["nav.links"])).to_have_count(0)
        open_app(page, fresh.url, "/teacher?lang=zh")
        main = page.locator(MAIN)
        expect(main.get_by_text(zh["teacher.not_a_teacher"])).to_be_visible()
        expect(main.get_by_text(zh["teacher.only"])).to_be_visible()
        expect(main.get_by_role("button", name=zh["teacher.sign_in_oidc"])).to_be_visible()
        expect(main.get_by_role("link", name=zh["nav.links"])).to_have_count(0)
        expect(main.get_by_text(zh["teacher.new_class"])).to_have_count(0)
        expect(page.locator(SIDEBAR).get_by_role("button", name=zh["teacher.sign_out"])).to_have_count(0)
        page.screenshot(path=str(artifacts / f"oidc-not-a-teacher-zh-{account['sub']}.png"), full_page=True)
        # The teacher-only pages refuse the account too, when opened by address.
        open_app(page, fresh.url, "/links?lang=zh")
        expect(page.locator(MAIN).get_by_text(zh["teacher.not_a_teacher"])).to_be_visible()
    finally:
        fresh.provider.user = dict(TEACHER)
