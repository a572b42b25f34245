"""The classroom load test works: 5 simulated students for 20 s against a real `streamlit run app.py`.

The students speak Streamlit's websocket protocol through bench.load / bench.stclient. The test
fails on any exception element, disconnect, timeout, failed connect or protocol error, and when
fewer than 10 reruns and control moves completed; latency is printed, never asserted (a shared
2-core machine is noisy). The small tests below check the protocol client's own logic without a server.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator

import pytest
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.load import LoadConfig, Server, percentile, rss_trend, run_load, streamlit_server
from bench.stclient import CookieJar, NumericWidget, ProtocolError, StreamlitClient

STUDENTS = 5
DURATION_S = 20.0
MIN_ACTIONS = 10
FAILURES = ("exception", "disconnect", "timeout", "connect_failed", "protocol", "page_not_found")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """Yield a `streamlit run app.py` on a free loopback port (the project's config); stop it afterwards.

    Its experiments run in worker processes, as a deployed server's do (the other tests run them in-process).
    """
    with streamlit_server(env={**os.environ, "TORCHLAB_RUN_PROCESSES": "auto"}) as running:
        yield running


def test_students_get_answers_without_errors(server: Server) -> None:
    cfg = LoadConfig(students=STUDENTS, duration=DURATION_S, ramp=2.0, think=0.5, change_share=0.3, seed=1)
    report = asyncio.run(run_load(server.url, cfg, [server.pid]))
    latency = report["latency"]
    print({action: (s["n"], s["p50_ms"], s["p95_ms"]) for action, s in latency.items()}, report["errors"])
    failures = {kind: n for kind, n in report["errors"].items() if kind in FAILURES}
    log_tail = server.log.read_text(errors="replace")[-3000:]
    assert not failures, f"{failures}; exceptions: {report['exception_samples']}; server log:\n{log_tail}"
    assert latency["load"]["n"] >= STUDENTS
    done = latency["rerun"]["n"] + latency["change"]["n"]
    assert done >= MIN_ACTIONS, f"only {done} reruns and changes completed in {DURATION_S:.0f} s"
    assert latency["change"]["n"] > 0, "no student moved a numeric control (none found in the deltas?)"
    assert report["server"]["series"], "the server's /proc figures were not sampled"
    assert max(sample["pids"] for sample in report["server"]["series"]) > 1, "no experiment ran in a worker process"
    assert all(0 < row["servers_rss_mib"] < row["rss_mib"] for row in report["server"]["series"] if row["pids"] > 1)
    assert report["server"]["rss_trend"] and report["server"]["cpu_ms_per_action"] > 0


def test_the_rss_trend_is_the_median_of_each_window() -> None:
    rows = [
        {"t_s": t, "rss_mib": rss, "servers_rss_mib": alone}
        for t, rss, alone in [(2, 100, 60), (30, 900, 61), (58, 101, 62), (61, 103, 63), (119, 104, 64)]
    ]
    trend = rss_trend(rows, window_s=60)
    assert [(w["from_s"], w["rss_mib"], w["servers_rss_mib"]) for w in trend] == [(0, 101, 61), (60, 103.5, 63.5)]


def test_cookie_jar_keeps_and_deletes_like_a_browser() -> None:
    jar = CookieJar()
    jar.update(["_streamlit_xsrf=2|ab|cd|1; Path=/; SameSite=Lax", "torchlab_replica=b; HttpOnly"])
    assert jar.get("_streamlit_xsrf") == "2|ab|cd|1"
    jar.update(["torchlab_replica=; Max-Age=0"])
    assert jar.header() == "_streamlit_xsrf=2|ab|cd|1"


@pytest.mark.parametrize(
    ("widget", "field"),
    [
        (NumericWidget("s", "slider", "k", 1, 64, 1, True), "double_array_value"),
        (NumericWidget("f", "slider", "x", -10, 10, 0.5, False, width=2), "double_array_value"),
        (NumericWidget("n", "number_input", "B", 2, 512, 1, True), "int_value"),
        (NumericWidget("lr", "number_input", "lr", 0.001, 1, 0.001, False), "double_value"),
    ],
)
def test_random_values_are_allowed_values(widget: NumericWidget, field: str) -> None:
    rng = random.Random(0)
    for _ in range(200):
        state = widget.random_state(rng)
        assert state.id == widget.id and state.WhichOneof("value") == field
        values = list(state.double_array_value.data) if field == "double_array_value" else [getattr(state, field)]
        assert len(values) == widget.width and values == sorted(values)
        for v in values:
            k = (v - widget.lo) / widget.step
            assert widget.lo <= v <= widget.hi and abs(k - round(k)) < 1e-6


def test_select_slider_sends_its_option_labels() -> None:
    widget = NumericWidget("w", "select_slider", "width", 0, 2, 1, True, options=("8", "16", "32"))
    state = widget.random_state(random.Random(1))
    assert len(state.string_array_value.data) == 1 and state.string_array_value.data[0] in widget.options


def forward(*, run_id: str = "", finished: int | None = None, new_session: str = "", ref_hash: str = "") -> bytes:
    """Return a serialized ForwardMsg: a script_finished, a new_session or a ref_hash (a test helper)."""
    msg = ForwardMsg()
    msg.metadata.run.script_run_id = run_id
    if finished is not None:
        msg.script_finished = finished  # type: ignore[assignment]
    elif new_session:
        msg.new_session.initialize.session_id = new_session
    elif ref_hash:
        msg.ref_hash = ref_hash
    data: bytes = msg.SerializeToString()
    return data


def test_only_the_requested_runs_finish_ends_the_wait() -> None:
    client = StreamlitClient("http://127.0.0.1:1", "/init?tab=signal")
    client._run_id = None  # a request was just sent: no new_session yet
    assert not client.handle(forward(finished=ForwardMsg.FINISHED_SUCCESSFULLY, run_id="old"))
    assert not client.handle(forward(new_session="s1", run_id="new"))
    assert client.session_id == "s1"
    assert not client.handle(forward(finished=ForwardMsg.FINISHED_EARLY_FOR_RERUN, run_id="new"))
    assert client.handle(forward(finished=ForwardMsg.FINISHED_SUCCESSFULLY, run_id="new"))


def test_a_reference_to_a_message_never_cached_is_a_protocol_error() -> None:
    client = StreamlitClient("http://127.0.0.1:1", "/init?tab=signal")
    with pytest.raises(ProtocolError):
        client.handle(forward(ref_hash="abc"))


def test_cached_elements_are_resolved_from_the_cache_and_expire() -> None:
    client = StreamlitClient("http://127.0.0.1:1", "/init?tab=signal")
    warning = ForwardMsg(hash="h1")
    warning.metadata.cacheable = True
    warning.delta.new_element.alert.format = Alert.WARNING
    runs = [forward(new_session="s", run_id=f"r{i}") for i in range(5)]
    done = [forward(finished=ForwardMsg.FINISHED_SUCCESSFULLY, run_id=f"r{i}") for i in range(5)]
    for chunk in (runs[0], warning.SerializeToString(), done[0], runs[1], forward(ref_hash="h1")):
        client.handle(chunk)
    assert client.totals.warnings == {"alert": 2} and client.totals.cache_refs == 1
    for i in (1, 2, 3):  # unused for more than max_cached_message_age (2) runs: dropped, as the frontend does
        client.handle(runs[i])
        client.handle(done[i])
    with pytest.raises(ProtocolError):
        client.handle(forward(ref_hash="h1"))


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0


def test_too_fast_students_are_slowed_and_told_and_a_flooding_script_is_cut_off() -> None:
    env = {**os.environ, "TORCHLAB_RATE": "2", "TORCHLAB_BURST": "12"}  # the defaults (tests lift them)
    with streamlit_server(env=env) as server:
        fast = LoadConfig(students=3, duration=10.0, ramp=1.0, think=0.5, seed=2, hogs=1, hog_rate=20.0)
        fast_report = asyncio.run(run_load(server.url, fast, [server.pid]))
        flood = LoadConfig(students=3, duration=10.0, ramp=1.0, think=0.5, seed=3, hogs=1, hog_rate=0.0)
        flood_report = asyncio.run(run_load(server.url, flood, [server.pid]))
    for report, hog_disconnects in ((fast_report, 0), (flood_report, 1)):
        print(report["hogs"][0], {action: (s["n"], s["p95_ms"]) for action, s in report["latency"].items()})
        failures = {kind: n for kind, n in report["errors"].items() if kind in FAILURES}
        if failures.get("disconnect") == hog_disconnects:  # the hog's own, counted with everyone's
            del failures["disconnect"]
        assert not failures, failures  # the other students: served, no error
        assert report["latency"]["rerun"]["n"] + report["latency"]["change"]["n"] >= MIN_ACTIONS / 2
    fast_hog, flood_hog = fast_report["hogs"][0], flood_report["hogs"][0]
    # 20 reruns a second, faster than the 2 a second allowed but as fast as a person might click:
    assert fast_hog["ended_by"] == "duration" and fast_hog["warnings"] > 0, "a too-fast student was not told to slow down"
    assert fast_hog["finished"] < fast_hog["sent"] / 2, "a too-fast student's reruns were not throttled"
    # as fast as the socket allows: no person does that, and the server hangs up (ui.session._hang_up)
    assert flood_hog["ended_by"] == "disconnect", "a flooding client was not disconnected"
