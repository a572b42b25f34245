"""Classroom load figure: N students commit the same prediction within one second; are all N recorded, and how fast?

For each database (SQLite file, and a throwaway PostgreSQL cluster when one can start), this bench:

1. seats N students in a fresh class through classroom.store (as the Join page does);
2. starts a real `streamlit run app.py` on that database and opens N simulated browser tabs
   (bench.stclient, Streamlit's websocket protocol) on the tensors lesson's layout tab, each
   carrying its student's signed seat token;
3. has every tab commit the same prediction (the form's radio + submit button, as the browser
   sends them), the N submissions spread evenly over one second; reports how many answers the
   database holds afterwards and the submit-to-rerun-finished time p50/p95;
4. times the answer write itself: N threads each writing one answer through Store.record within
   one second (another question), p50/p95 of each write;
5. times the dashboard's refresh: its data (fresh replica heartbeats + the class's answers) and
   the whole dashboard page through AppTest, p50/p95.

Figures, not pass/fail (`python -m bench.classroom --students 100`). Times are on this machine
with everything else it runs; compare them with each other, within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from bench.load import ROOT, percentile, streamlit_server
from bench.stclient import ClientError, StreamlitClient
from classroom import links
from classroom.db import make_engine, migrate
from classroom.store import Seat, Store

SECRET = "bench-classroom-secret"
QUESTION = "stride_t"  # tensors, layout tab: "what are the strides of x.t()?"
OPEN_AT_ONCE = 8  # tabs opening concurrently (the answers, not the page loads, are the figure)


class AnsweringStudent(StreamlitClient):
    """A browser tab that also remembers each form's radio and submit button, to commit a prediction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, message_cache=False, **kwargs)  # every element arrives whole: its ids can be read
        self.radios: dict[str, tuple[str, list[str], str]] = {}  # form id -> (radio id, option labels, fragment id)
        self.submits: dict[str, str] = {}  # form id -> submit button id

    def _on_delta(self, msg: ForwardMsg) -> None:
        super()._on_delta(msg)
        delta = msg.delta
        if delta.WhichOneof("type") != "new_element":
            return
        element = delta.new_element
        kind = element.WhichOneof("type")
        if kind == "radio" and element.radio.form_id:
            self.radios[element.radio.form_id] = (element.radio.id, list(element.radio.options), delta.fragment_id)
        elif kind == "button" and element.button.is_form_submitter:
            self.submits[element.button.form_id] = element.button.id

    async def commit(self, question: str, option: int) -> float:
        """Commit option `option` of the prediction `question`; return seconds from the send to the rerun's end."""
        form = f"predict.{question}"
        radio_id, options, fragment_id = self.radios[form]
        choice = WidgetState(id=radio_id, string_value=options[option])
        submit = WidgetState(id=self.submits[form], trigger_value=True)
        result = await self._timed_run((choice, submit), fragment_id)
        return result.seconds


def stats_ms(seconds: Sequence[float]) -> str:
    """Return 'p50 X ms · p95 Y ms · max Z ms (n)'."""
    if not seconds:
        return "no data"
    ms = [1000 * s for s in seconds]
    return f"p50 {percentile(ms, 50):.0f} ms · p95 {percentile(ms, 95):.0f} ms · max {max(ms):.0f} ms (n={len(ms)})"


async def answer_through_the_app(url: str, seats: Sequence[Seat], spread_s: float) -> tuple[list[float], list[str]]:
    """Open one tab per seat, then commit the same answer from every tab, spread over spread_s; return times and errors."""
    students = [
        AnsweringStudent(url, f"/tensors?tab=layout&seat={links.seat_token(s.student_id, s.class_id, SECRET.encode())}")
        for s in seats
    ]
    errors: list[str] = []
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(student: AnsweringStudent) -> None:
        async with gate:
            await student.open()

    opened = await asyncio.gather(*(open_one(s) for s in students), return_exceptions=True)
    ready = [s for s, o in zip(students, opened, strict=True) if not isinstance(o, BaseException)]
    errors += [f"open: {o!r}"[:200] for o in opened if isinstance(o, BaseException)]
    ready = [s for s in ready if f"predict.{QUESTION}" in s.radios and f"predict.{QUESTION}" in s.submits]
    print(f"  {len(ready)} of {len(students)} tabs show the question", flush=True)

    async def answer(i: int, student: AnsweringStudent) -> float:
        await asyncio.sleep(spread_s * i / max(1, len(ready)))
        return await student.commit(QUESTION, 0)

    times = await asyncio.gather(*(answer(i, s) for i, s in enumerate(ready)), return_exceptions=True)
    errors += [f"answer: {t!r}"[:200] for t in times if isinstance(t, BaseException)]
    for student in students:
        with suppress(ClientError):
            await student.close()
    return [t for t in times if isinstance(t, float)], errors


def direct_writes(store: Store, seats: Sequence[Seat], spread_s: float) -> tuple[list[float], int]:
    """Write one answer per seat, one thread each, spread over spread_s; return the seconds of each and how many were new."""
    start = threading.Barrier(len(seats))
    base = time.perf_counter()

    def write(i: int) -> tuple[float, str]:
        start.wait()
        delay = base + spread_s * i / len(seats) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        outcome = store.record(seats[i], "init", "relu_xavier", "same", True)
        return time.perf_counter() - t0, outcome

    with ThreadPoolExecutor(len(seats)) as pool:
        base = time.perf_counter() + 0.5
        results = list(pool.map(write, range(len(seats))))
    return [s for s, _ in results], sum(1 for _, o in results if o == "recorded")


def dashboard_times(store: Store, class_id: int, env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Return the seconds of the dashboard's data queries and of whole dashboard page runs (AppTest), `runs` each."""
    data: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        store.replicas(fresh_within=60)
        store.distributions(class_id)
        data.append(time.perf_counter() - t0)
    from streamlit.testing.v1 import AppTest

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.session_state["_classroom_teacher"] = True
        at.switch_page("pages/dashboard.py")
        at.run()
        pages: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            at.run()
            pages.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return data, pages


def one_database(name: str, url: str, students: int, spread_s: float, runs: int) -> None:
    """Run the whole figure on one database and print it."""
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    klass = store.create_class(f"bench {name}", "en")
    seats = [store.join(klass.code, f"student {i}") for i in range(students)]
    env = {
        **os.environ,
        "TORCHLAB_LINK_SECRET": SECRET,
        "TORCHLAB_RATE": "1000",
        "TORCHLAB_BURST": "100000",
        "TORCHLAB_REPLICA": f"bench-{name}",
    }
    if name == "sqlite":
        env["TORCHLAB_DATA_DIR"] = str(Path(url.removeprefix("sqlite:///")).parent)
        env.pop("TORCHLAB_DATABASE_URL", None)
    else:
        env["TORCHLAB_DATABASE_URL"] = url
    print(f"\n== {name}: {students} students, answers spread over {spread_s:g} s", flush=True)
    with streamlit_server(env=env) as server:
        rtt, errors = asyncio.run(answer_through_the_app(server.url, seats, spread_s))
        recorded = sum(store.distribution(klass.id, QUESTION).values())
        print(f"  through the app: {recorded} of {students} answers recorded; submit -> rerun finished: {stats_ms(rtt)}")
        for error in errors[:5]:
            print(f"    {error}")
        writes, new = direct_writes(store, seats, spread_s)
        print(f"  answer writes (Store.record, one thread each): {new} of {students} recorded; {stats_ms(writes)}")
        data, pages = dashboard_times(store, klass.id, {k: env[k] for k in env if k.startswith("TORCHLAB_")}, runs)
        print(f"  dashboard refresh, data queries: {stats_ms(data)}")
        print(f"  dashboard refresh, whole page (AppTest): {stats_ms(pages)}")
    engine.dispose()


@contextmanager
def postgres() -> Iterator[str | None]:
    """Yield the URL of a database in a throwaway PostgreSQL cluster, or None (with the reason printed) when none can start."""
    from tests.classroom import pg

    reason = pg.unavailable()
    if reason:
        print(f"\n== postgresql: SKIPPED ({reason})")
        yield None
        return
    with pg.cluster() as conninfo:
        yield pg.fresh_database(conninfo, "bench")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--spread", type=float, default=1.0, help="seconds over which the answers arrive")
    parser.add_argument("--runs", type=int, default=20, help="dashboard refreshes timed")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if args.db in ("sqlite", "both"):
        folder = Path(tempfile.mkdtemp(prefix="torchlab-bench-classroom-"))
        one_database("sqlite", f"sqlite:///{folder / 'torchlab.db'}", args.students, args.spread, args.runs)
    if args.db in ("postgresql", "both"):
        with postgres() as url:
            if url is not None:
                one_database("postgresql", url, args.students, args.spread, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
