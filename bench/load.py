"""Classroom load test: many simulated students on one TorchLab server, over Streamlit's own websocket protocol.

Run from the repository root:

    python -m bench.load --students 50 --duration 120          # starts its own `streamlit run app.py`
    python -m bench.load --url http://host:8501 --server-pid 1234 --students 150

Each student opens one lesson link (round robin over `--links`), then loops: think (exponential
around `--think` seconds), then rerun the page or, with probability `--change-share`, move a
numeric control (slider or number_input, found in the deltas): a share `--jump-share` of the
moves go to a random allowed value, the others nudge the control a step or two. Latency
is measured from the BackMsg to the run's script_finished (a page load: from the first HTTP
request). It prints figures, not pass/fail: latency p50/p95/max per action, errors by kind,
warnings, actions served against asked, the server's RSS and CPU over time (from /proc), the
client's own CPU, and replica affinity (the `torchlab_replica` cookie nginx sets), then one JSON
object with everything as the last line. `--hog N` adds students that send reruns as fast as the
socket allows, for the rate-limit check. The protocol client is bench/stclient.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.stclient import ClientError, CookieJar, RunResult, RunTimeout, StreamlitClient
from deploy.replicas import streamlit_command

ROOT: Final = Path(__file__).resolve().parent.parent
# Cheap-to-moderate tabs with numeric controls, one per lesson. A student gets links[i % len(links)].
DEFAULT_LINKS: Final = ("/tensors?tab=layout", "/init?tab=signal", "/autograd?tab=graph", "/accumulation?tab=equiv")
ACTIONS: Final = ("load", "rerun", "change")
REPLICA_COOKIE: Final = "torchlab_replica"
SERVER_START_S: Final = 120.0
RECONNECT_DELAY_S: Final = (0.5, 2.0)  # like the frontend's first reconnect backoff window
RSS_WINDOW_S: Final = 60.0  # the RSS trend's window
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class LoadConfig:
    """Everything that shapes one load test."""

    students: int = 20
    duration: float = 60.0  # seconds from the first connect to the last new action
    ramp: float = 10.0  # connects are spread evenly over this many seconds
    think: float = 5.0  # mean think time between a student's actions
    think_dist: str = "exp"  # "exp" (exponential, capped at 5x the mean) or "uniform" (0.5x to 1.5x)
    change_share: float = 0.3
    jump_share: float = 0.2  # of the changes, the share that jump to a random allowed value (the rest nudge a step or two)
    links: tuple[str, ...] = DEFAULT_LINKS
    seed: int = 0
    timeout: float = 60.0  # an action without script_finished after this long is a timeout
    hogs: int = 0
    hog_rate: float = 0.0  # BackMsgs per second per hog; 0 = as fast as the socket allows
    sample_every: float = 2.0
    locale: str = "en-US"
    message_cache: bool = True
    replica_cookie: str = REPLICA_COOKIE
    warmup: bool = True  # open each link once before the clock starts (a teacher tried the links)


# ---------------------------------------------------------------------------------------------
# Recording


@dataclass
class StudentRecord:
    """One student's link, replica cookie values in the order seen, and action count."""

    link: str
    replicas: list[str] = field(default_factory=list)
    actions: int = 0

    def saw_replica(self, value: str | None) -> None:
        """Note the affinity cookie's value if it is new for this student."""
        if value and (not self.replicas or self.replicas[-1] != value):
            self.replicas.append(value)


@dataclass
class HogRecord:
    """What one hog sent and was shown."""

    sent: int = 0
    finished: int = 0
    early: int = 0
    warnings: int = 0
    exceptions: int = 0
    error_alerts: int = 0
    ended_by: str = "duration"


@dataclass
class Recorder:
    """Everything the students report during one test (one event loop, so no locks)."""

    t0: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in ACTIONS})
    by_link: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)  # completion times of reruns and changes, from t0
    errors: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    error_alerts: int = 0
    error_alert_samples: Counter[str] = field(default_factory=Counter)
    exception_samples: Counter[str] = field(default_factory=Counter)
    disconnect_codes: Counter[str] = field(default_factory=Counter)
    changes_without_control: int = 0
    changed_controls: Counter[str] = field(default_factory=Counter)
    by_control: dict[str, list[float]] = field(default_factory=dict)  # "link · label · jump|nudge" -> move latencies
    students: list[StudentRecord] = field(default_factory=list)
    hogs: list[HogRecord] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    cache_refs: int = 0

    def add_run(self, action: str, result: RunResult, link: str) -> None:
        """Record one finished run: its latency (overall and for its link) and what it showed."""
        self.latencies[action].append(result.seconds)
        self.by_link.setdefault(link, {a: [] for a in ACTIONS})[action].append(result.seconds)
        if action != "load":
            self.done_at.append(time.perf_counter() - self.t0)
        self.errors["exception"] += len(result.exceptions)
        self.exception_samples.update(result.exceptions)
        self.warnings.update(result.warnings)
        self.error_alerts += result.error_alerts
        self.error_alert_samples.update(result.error_texts)
        self.errors["page_not_found"] += result.page_not_found
        self.messages += result.messages
        self.bytes += result.bytes
        self.cache_refs += result.cache_refs

    def add_error(self, error: ClientError) -> None:
        """Record a timeout, disconnect, failed connect or protocol error."""
        self.errors[error.kind] += 1
        code = getattr(error, "code", None)
        if error.kind == "disconnect":
            self.disconnect_codes[str(code)] += 1


# ---------------------------------------------------------------------------------------------
# Students


def think_time(rng: random.Random, cfg: LoadConfig) -> float:
    """Return one think time: exponential around cfg.think (capped at 5x), or uniform over 0.5x..1.5x."""
    if cfg.think <= 0:
        return 0.0
    if cfg.think_dist == "uniform":
        return rng.uniform(0.5 * cfg.think, 1.5 * cfg.think)
    return min(rng.expovariate(1.0 / cfg.think), 5.0 * cfg.think)


def new_client(base_url: str, link: str, cfg: LoadConfig, jar: CookieJar) -> StreamlitClient:
    """Return a protocol client for one student's tab."""
    return StreamlitClient(base_url, link, jar=jar, locale=cfg.locale, message_cache=cfg.message_cache, timeout=cfg.timeout)


async def student(index: int, base_url: str, cfg: LoadConfig, rec: Recorder, stop_at: float) -> None:
    """Simulate one student until stop_at: open the link, then think and rerun or move a control, reconnecting after a drop."""
    rng = random.Random(f"{cfg.seed}:{index}")
    record = StudentRecord(cfg.links[index % len(cfg.links)])
    rec.students.append(record)
    jar = CookieJar()
    client = new_client(base_url, record.link, cfg, jar)
    await asyncio.sleep(cfg.ramp * index / max(cfg.students, 1))
    try:
        while time.perf_counter() < stop_at:
            try:
                if not client.connected:
                    rec.add_run("load", await client.open(), client.link)
                else:
                    if not await sleep_until(time.perf_counter() + think_time(rng, cfg), stop_at):
                        break
                    await act(client, rng, cfg, rec)
                record.actions += 1
            except ClientError as e:
                rec.add_error(e)
                if not isinstance(e, RunTimeout):  # after a timeout the socket is still open: carry on
                    await close_quietly(client)  # then reconnect, as the frontend does
                if not client.connected:
                    await asyncio.sleep(rng.uniform(*RECONNECT_DELAY_S))
            finally:
                record.saw_replica(jar.get(cfg.replica_cookie))
    finally:
        await close_quietly(client)


async def act(client: StreamlitClient, rng: random.Random, cfg: LoadConfig, rec: Recorder) -> None:
    """Take one action and record its run: move a numeric control (cfg.change_share of the time) or rerun.

    A change on a page that shows no numeric control becomes a rerun (and is counted).
    """
    if rng.random() >= cfg.change_share:
        rec.add_run("rerun", await client.rerun(), client.link)
        return
    moved = await client.change(rng, cfg.jump_share)
    if moved is None:
        rec.changes_without_control += 1
        rec.add_run("rerun", await client.rerun(), client.link)
        return
    result, widget, jumped = moved
    rec.changed_controls[widget.label] += 1
    rec.by_control.setdefault(f"{client.link} · {widget.label} · {'jump' if jumped else 'nudge'}", []).append(result.seconds)
    rec.add_run("change", result, client.link)


async def sleep_until(wake_at: float, stop_at: float) -> bool:
    """Sleep until wake_at; return False (after sleeping only until stop_at) if that is past stop_at."""
    now = time.perf_counter()
    if wake_at > stop_at:
        await asyncio.sleep(max(0.0, stop_at - now))
        return False
    await asyncio.sleep(max(0.0, wake_at - now))
    return True


async def close_quietly(client: StreamlitClient) -> None:
    """Close a client's websocket (the next open() reconnects), ignoring a connection that is already gone."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 5.0)


async def hog(index: int, base_url: str, cfg: LoadConfig, rec: Recorder, stop_at: float) -> None:
    """Simulate an abusive student: after the page load, send reruns and control moves without waiting for any run."""
    rng = random.Random(f"{cfg.seed}:hog:{index}")
    record = HogRecord()
    rec.hogs.append(record)
    client = new_client(base_url, cfg.links[index % len(cfg.links)], cfg, CookieJar())
    reader: asyncio.Task[None] | None = None
    try:
        rec.add_run("load", await client.open(), client.link)
        reader = asyncio.create_task(client.pump())
        gap = 1.0 / cfg.hog_rate if cfg.hog_rate > 0 else 0.0
        while time.perf_counter() < stop_at and not reader.done():
            widgets = sorted(client.widgets.values(), key=lambda w: w.id)
            if widgets and rng.random() < cfg.change_share:
                widget = rng.choice(widgets)
                await client.send_rerun((widget.random_state(rng),), widget.fragment_id)
            else:
                await client.send_rerun()
            record.sent += 1
            await asyncio.sleep(gap)  # 0: just let the other students' coroutines run
        if reader.done():
            await reader  # raises what ended the reader (a disconnect, a protocol error)
    except ClientError as e:
        record.ended_by = e.kind
        rec.add_error(e)
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        totals = client.totals
        record.finished, record.early, record.error_alerts = totals.finished, totals.early, totals.error_alerts
        record.warnings, record.exceptions = sum(totals.warnings.values()), len(totals.exceptions)
        await close_quietly(client)


async def warm_up(base_url: str, cfg: LoadConfig) -> dict[str, float | str]:
    """Open every link once, one after another; return each link's load seconds (or the error's kind)."""
    times: dict[str, float | str] = {}
    for link in cfg.links:
        client = new_client(base_url, link, cfg, CookieJar())
        try:
            times[link] = round((await client.open()).seconds, 3)
        except ClientError as e:
            times[link] = e.kind
        finally:
            await close_quietly(client)
    return times


# ---------------------------------------------------------------------------------------------
# Processes: the server's memory and CPU from /proc, the client's own CPU


@dataclass(frozen=True)
class ProcSample:
    """Memory, CPU time and thread count of a process tree at one moment."""

    t: float
    rss_bytes: int
    cpu_seconds: float
    threads: int
    pids: int
    roots_rss_bytes: int = 0  # the sampled processes alone, without their children (a server without its workers)


def _stat_fields(pid: int) -> list[str] | None:
    """Return /proc/<pid>/stat's fields from field 3 (state) on, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_tree(roots: Sequence[int]) -> list[int]:
    """Return the pids of roots and all their descendants that are alive (zombies left out), read from /proc."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None and fields[0] != "Z":
            alive.add(int(entry.name))
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found and pid in alive:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def sample_tree(roots: Sequence[int], t: float) -> ProcSample:
    """Return RSS (sum), CPU seconds (user + system, sum) and threads of the process trees under roots."""
    rss = roots_rss = cpu_ticks = threads = 0
    pids = process_tree(roots)
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        cpu_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        threads += int(fields[17])  # num_threads (field 20)
        rss += int(fields[21]) * PAGE_BYTES  # rss in pages (field 24)
        if pid in roots:
            roots_rss += int(fields[21]) * PAGE_BYTES
    return ProcSample(t, rss, cpu_ticks / CLOCK_TICKS, threads, len(pids), roots_rss)


def own_cpu_seconds() -> float:
    """Return this process's CPU time so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sample_forever(
    roots: Sequence[int], every: float, t0: float, server: list[ProcSample], client: list[tuple[float, float]]
) -> None:
    """Append a server sample and the client's CPU seconds every `every` seconds until cancelled."""
    while True:
        now = time.perf_counter() - t0
        if roots and (sample := sample_tree(roots, now)).pids:  # nothing left to sample once the server is gone
            server.append(sample)
        client.append((now, own_cpu_seconds()))
        await asyncio.sleep(every)


def cpu_percent(a_t: float, a_cpu: float, b_t: float, b_cpu: float) -> float:
    """Return CPU use between two samples in percent of one core (200 = two cores busy).

    A process tree that lost a child loses that child's CPU time: the difference is then clamped at 0.
    """
    return max(0.0, 100.0 * (b_cpu - a_cpu) / (b_t - a_t)) if b_t > a_t else 0.0


# ---------------------------------------------------------------------------------------------
# A server the bench starts itself


@dataclass(frozen=True)
class Server:
    """A running `streamlit run app.py`: its URL, pid and log file."""

    url: str
    pid: int
    log: Path


def free_port() -> int:
    """Return a loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    """Return whether url/_stcore/health answers 200 ok."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except (urllib.error.URLError, OSError):
        return False


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started (its own process group): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def streamlit_server(root: Path = ROOT, env: dict[str, str] | None = None, attempts: int = 3) -> Iterator[Server]:
    """Run `streamlit run app.py` from root (so its .streamlit/config.toml applies) on a free loopback port; stop it after.

    A start that fails (say, the port was taken between our probe and Streamlit's bind) is retried
    on another port.
    """
    log = Path(tempfile.mkstemp(prefix="torchlab-load-server-", suffix=".log")[1])
    last_error = ""
    for _ in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = streamlit_command(port)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy(), start_new_session=True
            )
        try:
            deadline = time.monotonic() + SERVER_START_S
            while proc.poll() is None and time.monotonic() < deadline and not healthy(url):
                time.sleep(0.2)
            if proc.poll() is None and healthy(url):
                yield Server(url, proc.pid, log)
                return
            last_error = f"exit status {proc.poll()}" if proc.poll() is not None else f"not healthy in {SERVER_START_S:.0f} s"
        finally:
            stop_process(proc)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"streamlit run app.py did not start ({last_error}); log {log}:\n{tail}")


# ---------------------------------------------------------------------------------------------
# One test, start to report


async def run_load(base_url: str, cfg: LoadConfig, server_pids: Sequence[int] = ()) -> dict[str, Any]:
    """Run one load test against base_url; return the report (the dict printed as the last JSON line)."""
    warmup = await warm_up(base_url, cfg) if cfg.warmup else {}
    cpu_start, t0 = own_cpu_seconds(), time.perf_counter()
    rec = Recorder(t0)
    server_samples: list[ProcSample] = []
    client_samples: list[tuple[float, float]] = []
    sampler = asyncio.create_task(sample_forever(server_pids, cfg.sample_every, t0, server_samples, client_samples))
    stop_at = t0 + cfg.duration
    try:
        await asyncio.gather(
            *(student(i, base_url, cfg, rec, stop_at) for i in range(cfg.students)),
            *(hog(i, base_url, cfg, rec, stop_at) for i in range(cfg.hogs)),
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    wall = time.perf_counter() - t0
    if server_pids and (last := sample_tree(server_pids, wall)).pids:
        server_samples.append(last)
    client_cpu = cpu_percent(0.0, cpu_start, wall, own_cpu_seconds())
    return build_report(base_url, cfg, rec, wall, warmup, server_pids, server_samples, client_samples, client_cpu)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) with linear interpolation, like numpy.percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_stats(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Return count, p50, p95, max and mean in milliseconds (None without data)."""
    if not seconds:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "n": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 95) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "mean_ms": round(sum(seconds) / len(seconds) * 1000, 1),
    }


def throughput(cfg: LoadConfig, rec: Recorder, wall: float) -> dict[str, float]:
    """Return reruns + changes per second asked (students / think) and served (completed, after the ramp)."""
    window_start = min(cfg.ramp, wall / 2)
    window = max(min(cfg.duration, wall) - window_start, 1e-9)
    served = sum(1 for t in rec.done_at if window_start <= t <= window_start + window)
    asked = cfg.students / cfg.think if cfg.think > 0 else math.inf
    return {
        "asked_per_s": round(asked, 2),
        "served_per_s": round(served / window, 2),
        "served_ratio": round(served / window / asked, 3) if asked not in {0, math.inf} else math.nan,
        "window_s": round(window, 1),
    }


def server_series(samples: Sequence[ProcSample]) -> list[dict[str, float | int]]:
    """Return per-interval server figures: time, RSS MiB, CPU % (of one core) since the previous sample, threads."""
    rows = []
    for before, after in itertools.pairwise(samples):
        rows.append(
            {
                "t_s": round(after.t, 1),
                "rss_mib": round(after.rss_bytes / 2**20, 1),
                "servers_rss_mib": round(after.roots_rss_bytes / 2**20, 1),
                "cpu_pct": round(cpu_percent(before.t, before.cpu_seconds, after.t, after.cpu_seconds), 1),
                "threads": after.threads,
                "pids": after.pids,
            }
        )
    return rows


def summary_of(rows: Sequence[dict[str, float | int]]) -> dict[str, float | None]:
    """Return RSS at start, end and max, and mean and max CPU %, of a server series."""
    if not rows:
        return {"rss_start_mib": None, "rss_end_mib": None, "rss_max_mib": None, "cpu_mean_pct": None, "cpu_max_pct": None}
    cpu = [float(r["cpu_pct"]) for r in rows]
    rss = [float(r["rss_mib"]) for r in rows]
    return {
        "rss_start_mib": rss[0],
        "rss_end_mib": rss[-1],
        "rss_max_mib": max(rss),
        "cpu_mean_pct": round(sum(cpu) / len(cpu), 1),
        "cpu_max_pct": max(cpu),
    }


def rss_trend(rows: Sequence[dict[str, float | int]], window_s: float = RSS_WINDOW_S) -> list[dict[str, float]]:
    """Return the median RSS of each `window_s` of a server series: the whole tree, and the servers without workers.

    Medians, because a run in a worker lifts the tree for a second or two; a leak lifts every window.
    """
    windows: dict[int, list[dict[str, float | int]]] = {}
    for row in rows:
        windows.setdefault(int(float(row["t_s"]) // window_s), []).append(row)
    return [
        {
            "from_s": k * window_s,
            "to_s": (k + 1) * window_s,
            "rss_mib": round(statistics.median(float(r["rss_mib"]) for r in ws), 1),
            "servers_rss_mib": round(statistics.median(float(r["servers_rss_mib"]) for r in ws), 1),
        }
        for k, ws in sorted(windows.items())
    ]


def cpu_ms_per_action(samples: Sequence[ProcSample], rec: Recorder) -> float | None:
    """Return the sampled processes' CPU time per student action (page loads, reruns and moves), in ms.

    What one action costs the server side (workers and nginx included when sampled): with the
    think time it says how many students a core can carry, on this machine.
    """
    actions = len(rec.done_at) + len(rec.latencies["load"])
    if len(samples) < 2 or not actions:
        return None
    return round(1000 * (samples[-1].cpu_seconds - samples[0].cpu_seconds) / actions, 1)


def replica_report(students: Sequence[StudentRecord]) -> dict[str, Any]:
    """Return students per replica (by their last cookie value) and how many students switched replica."""
    per_replica = Counter(s.replicas[-1] if s.replicas else "(no cookie)" for s in students)
    switched = [s for s in students if len(s.replicas) > 1]
    return {
        "per_replica": dict(sorted(per_replica.items())),
        "switches": len(switched),
        "switch_examples": [s.replicas for s in switched[:5]],
    }


def build_report(
    base_url: str,
    cfg: LoadConfig,
    rec: Recorder,
    wall: float,
    warmup: dict[str, float | str],
    server_pids: Sequence[int],
    server_samples: Sequence[ProcSample],
    client_samples: Sequence[tuple[float, float]],
    client_cpu: float,
) -> dict[str, Any]:
    """Return every figure of one test as a JSON-ready dict."""
    series = server_series(server_samples)
    client_series = [
        {"t_s": round(b[0], 1), "cpu_pct": round(cpu_percent(a[0], a[1], b[0], b[1]), 1)}
        for a, b in itertools.pairwise(client_samples)
    ]
    errors = {k: v for k, v in sorted(rec.errors.items()) if v}
    return {
        "config": asdict(cfg) | {"url": base_url, "server_pids": list(server_pids)},
        "wall_s": round(wall, 1),
        "warmup_load_s": warmup,
        "latency": {action: latency_stats(rec.latencies[action]) for action in ACTIONS},
        "latency_by_link": {
            link: {a: latency_stats(xs) for a, xs in runs.items()} for link, runs in sorted(rec.by_link.items())
        },
        "errors": errors,
        "errors_total": sum(errors.values()),
        "disconnect_codes": dict(rec.disconnect_codes),
        "exception_samples": [text for text, _ in rec.exception_samples.most_common(5)],
        "warnings": dict(rec.warnings),
        "error_alerts": rec.error_alerts,
        "error_alert_samples": [text for text, _ in rec.error_alert_samples.most_common(5)],
        "changes_without_control": rec.changes_without_control,
        "changed_controls": dict(rec.changed_controls.most_common()),
        "change_by_control": {k: latency_stats(xs) for k, xs in sorted(rec.by_control.items())},
        "throughput": throughput(cfg, rec, wall),
        "messages": {"received": rec.messages, "mib": round(rec.bytes / 2**20, 1), "cache_refs": rec.cache_refs},
        "server": {
            "series": series,
            "summary": summary_of(series),
            "rss_trend": rss_trend(series),
            "cpu_ms_per_action": cpu_ms_per_action(server_samples, rec),
        },
        "client": {"cpu_pct": round(client_cpu, 1), "series": client_series},
        "replicas": replica_report(rec.students),
        "hogs": [asdict(h) for h in rec.hogs],
    }


# ---------------------------------------------------------------------------------------------
# Printing


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table with a title line."""
    cells = [[str(h) for h in headers], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def fmt(value: object) -> str:
    """Format a table cell: floats with one decimal, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.1f}"
    return str(value)


def thin(rows: Sequence[Any], at_most: int = 15) -> list[Any]:
    """Return at most about at_most rows, evenly spaced, always keeping the last."""
    if len(rows) <= at_most:
        return list(rows)
    step = math.ceil(len(rows) / at_most)
    kept = list(rows[::step])
    return kept if kept[-1] is rows[-1] else [*kept, rows[-1]]


def print_report(r: dict[str, Any]) -> None:
    """Print the report as plain-text tables (the JSON line follows separately)."""
    c = r["config"]
    print(
        f"TorchLab load test: {c['students']} students + {c['hogs']} hogs for {c['duration']:.0f} s "
        f"(ramp {c['ramp']:.0f} s, think {c['think']:g} s {c['think_dist']}, change share {c['change_share']:g}, "
        f"jump share {c['jump_share']:g}) "
        f"against {c['url']}; wall {r['wall_s']} s"
    )
    print("links: " + ", ".join(c["links"]))
    if r["warmup_load_s"]:
        print("warm-up page loads (s): " + ", ".join(f"{k} {v}" for k, v in r["warmup_load_s"].items()))
    latency = [[a, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"], s["mean_ms"]] for a, s in r["latency"].items()]
    print_table(
        "Latency (ms): load = first HTTP request to first script_finished; rerun/change = BackMsg to script_finished",
        ["action", "n", "p50", "p95", "max", "mean"],
        latency,
    )
    by_link = [
        [link, a, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"]]
        for link, stats in r["latency_by_link"].items()
        for a, s in stats.items()
        if s["n"]
    ]
    print_table("Latency by link (ms)", ["link", "action", "n", "p50", "p95", "max"], by_link)
    slowest = sorted(r["change_by_control"].items(), key=lambda kv: -(kv[1]["p95_ms"] or 0))[:12]
    print_table(
        "Slowest controls to move (ms; jump = to a random allowed value, nudge = a step or two)",
        ["link · control · move", "n", "p50", "p95", "max"],
        [[k, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"]] for k, s in slowest],
    )
    t = r["throughput"]
    print(
        f"\nActions (reruns + changes) per second after the ramp ({t['window_s']} s): asked {t['asked_per_s']} "
        f"(students / think), served {t['served_per_s']} (ratio {fmt(t['served_ratio'])}; a closed loop: each "
        "student waits for the answer before thinking again, so latency alone keeps the ratio below 1)"
    )
    print_table(
        "Errors (exception elements, disconnects, timeouts, failed connects, protocol errors)",
        ["kind", "count"],
        [[k, v] for k, v in r["errors"].items()] or [["(none)", 0]],
    )
    for sample in r["exception_samples"]:
        print(f"  exception: {sample}")
    if r["disconnect_codes"]:
        print(f"  disconnect close codes: {r['disconnect_codes']}")
    print(
        f"Warnings shown (not errors): {r['warnings'] or 0}; st.error boxes: {r['error_alerts']}; "
        f"changes with no control on the page: {r['changes_without_control']}"
    )
    for sample in r["error_alert_samples"]:
        print(f"  st.error: {sample}")
    m = r["messages"]
    print(f"ForwardMsgs received: {m['received']:,} ({m['mib']} MiB), cached-message references: {m['cache_refs']:,}")
    rows = r["server"]["series"]
    if rows:
        print_table(
            f"Server process tree (pids {c['server_pids']}): CPU % of one core since the previous sample",
            ["t (s)", "RSS MiB", "CPU %", "threads", "pids"],
            [[x["t_s"], x["rss_mib"], x["cpu_pct"], x["threads"], x["pids"]] for x in thin(rows)],
        )
        s = r["server"]["summary"]
        print(
            f"  RSS {s['rss_start_mib']} -> {s['rss_end_mib']} MiB (max {s['rss_max_mib']}); "
            f"CPU mean {s['cpu_mean_pct']} %, max {s['cpu_max_pct']} %"
        )
        print_table(
            f"RSS median per {RSS_WINDOW_S:.0f} s (a leak lifts every window; a run in a worker only a sample or two)",
            ["from (s)", "to (s)", "tree MiB", "servers alone MiB"],
            [[w["from_s"], w["to_s"], w["rss_mib"], w["servers_rss_mib"]] for w in r["server"]["rss_trend"]],
        )
        per_action = r["server"]["cpu_ms_per_action"]
        print(f"  Server CPU per student action: {per_action} ms (CPU time of the sampled processes / actions done)")
    else:
        print("\nServer: no pid to sample (give --server-pid)")
    print(f"Client (this process) CPU: {r['client']['cpu_pct']} % of one core over the test")
    rep = r["replicas"]
    print(
        f"Replicas (cookie {c['replica_cookie']}): students per replica {rep['per_replica']}; "
        f"replica switches: {rep['switches']}"
    )
    for h in r["hogs"]:
        print(
            f"Hog: sent {h['sent']:,} reruns, {h['finished']:,} runs finished, {h['early']:,} cut short, "
            f"{h['warnings']} warnings, {h['exceptions']} exceptions, ended by {h['ended_by']}"
        )


# ---------------------------------------------------------------------------------------------
# Command line


def positive_float(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if value < 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def share(text: str) -> float:
    """argparse type: a float between 0 and 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server (http://host:port); default: start `streamlit run app.py` here")
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="a server process to sample for RSS/CPU (repeatable; its children are included)",
    )
    p.add_argument("--students", type=int, default=LoadConfig.students)
    p.add_argument("--duration", type=positive_float, default=LoadConfig.duration, help="seconds")
    p.add_argument("--ramp", type=positive_float, default=LoadConfig.ramp, help="seconds to spread the connects over")
    p.add_argument("--think", type=positive_float, default=LoadConfig.think, help="mean think time, seconds")
    p.add_argument("--think-dist", choices=("exp", "uniform"), default=LoadConfig.think_dist)
    p.add_argument(
        "--change-share",
        type=share,
        default=LoadConfig.change_share,
        help="share of actions that move a numeric control (the rest rerun)",
    )
    p.add_argument(
        "--jump-share",
        type=share,
        default=LoadConfig.jump_share,
        help="share of moves that jump to a random allowed value (the rest nudge a step or two)",
    )
    p.add_argument("--links", nargs="+", default=list(DEFAULT_LINKS), help="lesson links, e.g. /init?tab=signal")
    p.add_argument("--seed", type=int, default=LoadConfig.seed)
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=LoadConfig.timeout,
        help="seconds without script_finished that make an action a timeout",
    )
    p.add_argument("--hog", type=int, default=0, dest="hogs", help="students that rerun as fast as the socket allows")
    p.add_argument("--hog-rate", type=positive_float, default=0.0, help="cap per hog, BackMsgs/s (0: no cap)")
    p.add_argument("--sample-every", type=positive_float, default=LoadConfig.sample_every, help="seconds")
    p.add_argument("--locale", default=LoadConfig.locale, help="the browser language sent in ClientState.context_info")
    p.add_argument("--no-message-cache", action="store_true", help="announce no cached messages (no ref_hash replies)")
    p.add_argument("--replica-cookie", default=REPLICA_COOKIE)
    p.add_argument("--no-warmup", action="store_true", help="do not open each link once before the clock starts")
    args = p.parse_args(argv)
    if args.students < 0 or args.hogs < 0 or not args.links:
        p.error("--students and --hog must be >= 0, and --links not empty")
    return args


def config_from(args: argparse.Namespace) -> LoadConfig:
    """Return the LoadConfig the command line asks for."""
    return LoadConfig(
        students=args.students,
        duration=args.duration,
        ramp=args.ramp,
        think=args.think,
        think_dist=args.think_dist,
        change_share=args.change_share,
        jump_share=args.jump_share,
        links=tuple(args.links),
        seed=args.seed,
        timeout=args.timeout or LoadConfig.timeout,
        hogs=args.hogs,
        hog_rate=args.hog_rate,
        sample_every=args.sample_every or LoadConfig.sample_every,
        locale=args.locale,
        message_cache=not args.no_message_cache,
        replica_cookie=args.replica_cookie,
        warmup=not args.no_warmup,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test the command line describes, print the tables and the JSON line; return 0."""
    args = parse_args(argv)
    cfg = config_from(args)
    if args.url:
        report = asyncio.run(run_load(args.url.rstrip("/"), cfg, args.server_pid))
    else:
        with streamlit_server() as server:
            print(f"started streamlit run app.py (pid {server.pid}, log {server.log})", flush=True)
            report = asyncio.run(run_load(server.url, cfg, [server.pid, *args.server_pid]))
    print_report(report)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
