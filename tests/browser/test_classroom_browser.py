"""The classroom in a real browser: a teacher signs in, builds a link with a locked control; a student opens it, edits
the URL, and still gets the teacher's value (Chromium driven by Playwright against a real `streamlit run`)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from classroom.auth import hash_password
from classroom.db import make_engine
from classroom.store import Store
from tests.browser.test_browser import (  # importing it skips this module too, loudly, without Chromium or Playwright
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    VIEWPORT,
    Browser,
    Locator,
    Page,
    StreamlitServer,
    expect,
    open_app,
    rerun_after,
    streamlit_server,
    sync_playwright,
    ui_strings,
    wait_for_app_idle,
    worker_suffix,
)

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
EN = ui_strings("en")


@pytest.fixture(scope="module")
def classroom_server(artifacts: Path) -> Iterator[tuple[StreamlitServer, Store]]:
    """Yield a real server with its own classroom database, link secret and teacher password, and that database's store."""
    data = Path(tempfile.mkdtemp(prefix="torchlab-classroom-browser-"))
    settings = {
        "TORCHLAB_DATA_DIR": str(data),
        "TORCHLAB_LINK_SECRET": "browser-test-secret",
        "TORCHLAB_TEACHER_PASSWORD_HASH": hash_password(PASSWORD),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        patch.delenv("TORCHLAB_DATABASE_URL", raising=False)
        with streamlit_server(artifacts / f"classroom-server{worker_suffix()}.log") as server:
            yield server, Store(make_engine(f"sqlite:///{data / 'torchlab.db'}"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser: Browser) -> Page:
    page = browser.new_context(viewport=VIEWPORT, locale="en-US").new_page()  # type: ignore[arg-type]
    page.set_default_timeout(TIMEOUT_MS)
    return page


METRIC = '[data-testid="stMetricValue"]'


def shape_metric(page: Page, n: str) -> Locator:
    """Return the creation experiment's shape metric once it shows (n,)."""
    return page.locator(METRIC).filter(has_text=f"({n},)").first


def test_a_locked_value_survives_a_student_editing_the_url(
    browser: Browser, classroom_server: tuple[StreamlitServer, Store], artifacts: Path
) -> None:
    server, _ = classroom_server
    teacher = new_page(browser)
    open_app(teacher, server.url, "/teacher?lang=en")
    teacher.get_by_label(EN["teacher.password"]).fill(PASSWORD)
    rerun_after(teacher, lambda: teacher.get_by_role("button", name=EN["teacher.sign_in"]).click())
    # The link builder is listed for the signed-in teacher only; the sign-in lives in this session.
    main = teacher.locator('[data-testid="stMain"]')
    rerun_after(teacher, lambda: main.get_by_role("link", name=EN["nav.links"]).click())
    expect(teacher.locator('[data-testid="stMain"] h1').first).to_have_text(EN["links.title"])
    slider = teacher.get_by_role("slider").first  # create.n, the experiment's first numeric control
    slider.focus()
    rerun_after(teacher, lambda: teacher.keyboard.press("ArrowRight"))
    group = teacher.get_by_role("radiogroup", name=EN["links.mode"].format(field=EN["create.n"]))
    rerun_after(teacher, lambda: group.get_by_text(EN["links.mode_locked"], exact=True).click())
    link = teacher.locator('[data-testid="stCode"] code').first.inner_text().strip()
    locked_n = parse_qs(urlsplit(link).query)["create.n"][0]
    assert locked_n != "10000", "the teacher moved the slider off its default"
    teacher.screenshot(path=str(artifacts / "classroom-link-builder.png"), full_page=True)

    student = new_page(browser)
    parts = urlsplit(link)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    open_app(student, server.url, f"{parts.path}?{urlencode(query)}")
    try:
        expect(shape_metric(student, locked_n)).to_be_visible()
    except AssertionError:
        student.screenshot(path=str(artifacts / "classroom-student-first-open-FAILED.png"), full_page=True)
        metrics = student.locator(METRIC).all_inner_texts()
        raise AssertionError(f"no ({locked_n},) metric at {student.url}; metrics shown: {metrics}") from None
    # The student edits the locked value in the address bar and loads the page again.
    query["create.n"] = "7"
    open_app(student, server.url, f"{parts.path}?{urlencode(query)}")
    wait_for_app_idle(student)
    expect(shape_metric(student, locked_n)).to_be_visible()
    expect(student.locator(METRIC).filter(has_text="(7,)")).to_have_count(0)
    notice = EN["links.locked_kept"].format(field=EN["create.n"])
    expect(student.get_by_text(notice)).to_be_visible()
    expect(student.get_by_role("slider").first).to_be_disabled()
    assert parse_qs(urlsplit(student.url).query)["create.n"] == [locked_n]
    student.screenshot(path=str(artifacts / "classroom-student-locked.png"), full_page=True)
    # Removing the signature's last characters: the link no longer verifies, and says so.
    query["_link"] = query["_link"][:-3]
    open_app(student, server.url, f"{parts.path}?{urlencode(query)}")
    expect(student.get_by_text(EN["links.invalid"])).to_be_visible()
