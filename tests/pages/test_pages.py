"""Every page in both languages, through Streamlit's AppTest: defaults, each widget moved, hostile URLs."""

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from core import runner
from core.lessons import LESSONS
from core.lessons.training import logreg as train_logreg
from core.lessons.training.logreg import LogregParams
from ui.run import JOBS, cache_key

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["pages/home.py", *[lesson.page for lesson in LESSONS]]
# Every place a student can land: the home page, and each tab of each lesson.
VIEWS = [("pages/home.py", ""), *[(lesson.page, tab) for lesson in LESSONS for tab in lesson.tabs]]
EXPERIMENT_VIEWS = [(page, tab) for page, tab in VIEWS if tab and tab != "pitfalls"]
LANGS = ["en", "zh"]
HAN = re.compile(r"[\u4e00-\u9fff]")


def watching(at: AppTest) -> bool:
    """Return whether the page shows a run's progress and Stop button (a browser would poll it until the run ends)."""
    return any(str(b.key).endswith(".stop") for b in at.button)


def run_settled(at: AppTest) -> AppTest:
    """Run the script; while it follows a run still going, wait for the session's runs and run again, as the poll would."""
    at.run()
    while watching(at):
        jobs = at.session_state[JOBS] if JOBS in at.session_state else {}  # noqa: SIM401 (no .get on AppTest state)
        for job in list(jobs.values()):
            assert job.wait(180), "a run that never ends"
        at.run()
    return at


def open_page(page: str, lang: str, query: dict[str, str] | None = None, settle: bool = True) -> AppTest:
    """Run the app with ?lang= and the query, switch to the page, and return it rendered (its long runs ended)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"lang": lang, **(query or {})})
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        run_settled(at) if settle else at.run()
    return at


def assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements: Any) -> list[str]:
    return [str(e.value) for e in elements]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("page", "tab"), VIEWS)
def test_default_render(page: str, tab: str, lang: str) -> None:
    at = open_page(page, lang, {"tab": tab} if tab else None)
    assert_healthy(at)
    assert not at.error, texts(at.error)
    assert at.session_state["lang"] == lang
    title = at.title[0].value
    assert bool(HAN.search(title)) == (lang == "zh"), title
    if (page, tab) in EXPERIMENT_VIEWS:
        assert at.query_params.get("tab") == tab
        answers = sum(len(at.get(kind)) for kind in ("plotly_chart", "graphviz_chart", "arrow_data_frame", "metric"))
        assert answers + len(at.dataframe) >= 1, "every experiment draws its answer"
        assert any(f"{tab}." in k for k in at.query_params), "the settings are mirrored in the URL"
        downloads = at.get("download_button")
        assert downloads and all(d.proto.ignore_rerun for d in downloads), "a script download does not rerun the page"


def _another_value(widget: Any) -> Any:
    """Return a valid value different from the widget's current one (None when there is none)."""
    kind = type(widget).__name__
    if kind in ("Slider", "NumberInput"):
        lo, hi, now = widget.min, widget.max, widget.value
        mid = type(now)(lo + (hi - lo) / 3) if kind == "Slider" else min(hi, now * 2 if now else lo + 1)
        return mid if mid != now else hi
    if kind == "SelectSlider":  # a ladder: options are the formatted stops
        stops = [float(option) for option in widget.options]
        others = [stop for stop in stops if stop != float(widget.value)]
        return type(widget.value)(others[len(others) // 3]) if others else None
    if kind == "Selectbox":
        options = widget.options
        if widget.value is None:  # a picker with nothing chosen yet (e.g. "start from an example")
            return len(options) - 1
        return (widget.index + 1) % len(options) if len(options) > 1 else None
    if kind == "Multiselect":
        return [o for o in widget.options[:2] if o not in widget.value][:1] or widget.options[-1:]
    if kind == "Toggle":
        return not widget.value
    if kind == "TextInput":
        return "2x2" if widget.value != "2x2" else "3"
    return None


def _set(widget: Any, value: Any) -> None:
    kind = type(widget).__name__
    if kind == "Selectbox":
        widget.select_index(value)
    else:
        widget.set_value(value)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("page", "tab"), EXPERIMENT_VIEWS)
def test_each_widget_moved(page: str, tab: str, lang: str) -> None:
    at = open_page(page, lang, {"tab": tab})
    kinds = ("slider", "select_slider", "number_input", "selectbox", "multiselect", "toggle", "text_input")
    keys = [w.key for kind in kinds for w in at.get(kind) if w.key and not w.key.startswith(("predict.", "lang"))]
    assert len(keys) >= 2
    moved = 0
    for key in keys:
        widget = next((w for kind in kinds for w in at.get(kind) if w.key == key), None)
        if widget is None:  # hidden by an earlier change (e.g. the function no longer reads it)
            continue
        value = _another_value(widget)
        if value is None:
            continue
        _set(widget, value)
        run_settled(at)
        assert_healthy(at)
        moved += 1
    assert moved >= len(keys) * 0.7


# (tab shown, query): each query carries junk for the experiment on that tab.
HOSTILE = {
    "huge numbers": ("create", {"create.n": "9" * 40, "create.a": "1e400", "layout.rows": "-99999999"}),
    "absurd shapes": ("shape", {"shape.shape": "1000000x1000000", "shape.new_shape": "-1x-1"}),
    "too many dims": ("broadcast", {"broadcast.shape_a": "99x99x99x99x99x99x99"}),
    "markup and script": ("layout", {"layout.views": "<script>alert(1)</script>", "layout.edit_target": "**x**"}),
    "code as input": ("index", {"index.indices": "__import__('os').system('true')", "index.op": "eval"}),
    # What a server makes of invalid UTF-8 in a URL (U+FFFD), full-width look-alikes, stray escapes.
    "malformed unicode": ("dtype", {"dtype.src": "\ufffd\ufffd", "dtype.dst": "ｆｌｏａｔ３２", "dtype.n": "%E0%A4%A"}),
    "wrong types": ("inplace", {"inplace.n": "1.5", "inplace.value": "nan", "inplace.form": ""}),
    "very long": ("numpy", {"numpy.way": "a" * 100_000, "numpy.n": "1" * 5000}),
    # Digits Python's int()/float() would read but a link must not: superscript, circled, Arabic-Indic, full-width, "_".
    "unicode digits": ("create", {"create.n": "²", "create.a": "٣", "create.seed": "①", "create.b": "１", "create.p": "0_5"}),
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_query_strings(case: str, lang: str) -> None:
    tab, query = HOSTILE[case]
    at = open_page(PAGES[1], lang, {"tab": tab, **query})
    assert_healthy(at)
    assert at.warning, "a rejected URL value must be named in a warning"
    assert len(at.get("plotly_chart")) + len(at.dataframe) >= 1, "the defaults still run"
    assert all(bool(HAN.search(w.value)) == (lang == "zh") for w in at.warning)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("raw", ["²", "①", "٣", "１", "1_0", "99999", "-3"])
def test_a_step_in_the_link_is_read_by_the_codec(raw: str, lang: str) -> None:
    at = open_page(PAGES[2], lang, {"tab": "backward", "backward.step": raw})
    assert_healthy(at)
    assert not at.error, texts(at.error)
    step = at.slider(key="backward.step")
    assert step.min <= step.value <= step.max


@pytest.mark.parametrize("lang", LANGS)
def test_a_link_past_the_budget_gets_the_largest_value_that_fits(lang: str) -> None:
    # eye(100000) would need 40 GB: the slider stops at the largest n that fits the memory budget,
    # the link's value is brought down to it with a notice, and the experiment runs.
    at = open_page(PAGES[1], lang, {"create.fn": "eye", "create.n": "100000"})
    assert_healthy(at)
    assert not at.error, texts(at.error)
    n = at.select_slider(key="create.n")
    most = max(n.options, key=float)
    assert float(n.value) == float(most) < 100000
    assert any("100000" in w and most in w for w in texts(at.warning)), texts(at.warning)
    assert all(bool(HAN.search(w)) == (lang == "zh") for w in texts(at.warning))


def test_language_follows_browser_locale_unless_the_link_says_otherwise() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert at.session_state["lang"] == "en"  # AppTest's browser has no zh locale
    at.selectbox(key="lang_switch").select("zh")
    at.run()
    assert HAN.search(at.title[0].value)
    at.switch_page(PAGES[1])
    at.run()
    assert at.session_state["lang"] == "zh" and HAN.search(at.title[0].value)
    at.switch_page(PAGES[0])
    at.run()
    assert at.session_state["lang"] == "zh" and HAN.search(at.title[0].value)
    at.selectbox(key="lang_switch").select("en")
    at.run()
    assert at.session_state["lang"] == "en" and not HAN.search(at.title[0].value)
    assert not any(HAN.search(m.value) for m in at.markdown)


def test_unknown_tab_in_the_link_opens_the_first_one() -> None:
    at = open_page(PAGES[1], "en", {"tab": "<img src=x onerror=alert(1)>"})
    assert_healthy(at)
    assert at.query_params.get("tab") == LESSONS[0].tabs[0]


@pytest.mark.parametrize(("choice", "right"), [("(1, 7)", True), ("(7, 1)", False)])
def test_prediction_is_checked_against_the_experiment(choice: str, right: bool) -> None:
    at = open_page(PAGES[1], "en", {"tab": "layout"})
    at.radio(key="predict.stride_t.guess").set_value(choice)
    form_button = next(b for b in at.get("button") if "predict.stride_t" in str(b.proto.form_id))
    form_button.click()
    at.run()
    assert_healthy(at)
    if right:
        assert any("Right" in s for s in texts(at.success))
    else:
        assert any("Not quite" in e for e in texts(at.error))


def test_teacher_can_hide_controls_and_pin_values() -> None:
    at = open_page(PAGES[1], "en", {"tab": "create", "create.fn": "rand", "create.n": "500", "_hide": "create.n,create.seed"})
    assert_healthy(at)
    keys = {w.key for w in at.get("number_input")}
    assert "create.n" not in keys and "create.seed" not in keys
    assert at.selectbox(key="create.fn").value == "rand"
    assert at.query_params.get("create.n") == "500"
    assert any("(500,)" in str(m.value) for m in at.get("metric"))


def test_a_busy_device_makes_the_page_wait_then_render() -> None:
    at = open_page(PAGES[1], "en", {"tab": "shape"})
    held = threading.Event()

    def occupy() -> None:
        with runner.GATE.hold(exclusive=True):
            held.set()
            time.sleep(1.5)

    threading.Thread(target=occupy).start()
    held.wait(5)
    runner.RESULTS.clear()
    at.run()
    assert_healthy(at)
    assert len(at.get("plotly_chart")) == 1


def test_a_long_run_shows_its_progress_and_stops_at_the_students_request_keeping_its_steps() -> None:
    training = next(lesson.page for lesson in LESSONS if lesson.slug == "training")
    long_run = {"tab": "logreg", "train_logreg.n": "500", "train_logreg.max_steps": "2000", "train_logreg.stop_early": "false"}
    open_page(training, "en", {"tab": "logreg"})  # the tab's question runs now, so that it is cached below
    with runner.GATE.hold(exclusive=True):  # the device is busy: the run waits, so it cannot end before Stop is pressed
        at = open_page(training, "en", long_run, settle=False)
        assert_healthy(at)
        assert watching(at), "a run still waiting after the page's first second is handed to the watcher"
        assert any("number 1 in the queue" in i for i in texts(at.info)), texts(at.info)
        assert not at.get("metric"), "while it waits, the page shows no result yet"
        at.button(key="train_logreg.stop").click()
        at.run()
    run_settled(at)
    assert_healthy(at)
    assert any("Stopped at your request" in i for i in texts(at.info)), texts(at.info)
    after = at.metric[1].delta
    steps = int(re.sub(r"\D", "", str(after)))
    assert 0 <= steps < 2000, after
    # The partial result is the student's alone: the class-wide cache never saw it.
    key = cache_key(train_logreg.run, LogregParams(n=500, max_steps=2000, stop_early=False))
    assert key not in runner.RESULTS
    at.button(key="train_logreg.again").click()
    run_settled(at)
    assert not any("Stopped at your request" in i for i in texts(at.info))
    assert str(at.metric[1].delta).endswith("2000 steps"), at.metric[1].delta
    assert key in runner.RESULTS
