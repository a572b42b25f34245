"""A headless Streamlit client that speaks the browser's websocket protocol, for load tests.

One `StreamlitClient` is one browser tab. It does what the real frontend does (checked against
streamlit 1.67, which serves through starlette + uvicorn: streamlit/web/server/starlette/
starlette_websocket.py, streamlit/runtime/app_session.py, and the frontend's
connection/src/WebsocketConnection.tsx, connection/src/ForwardMessageCache.ts, app/src/App.tsx):

1. GET the page, then /_stcore/health (which sets the `_streamlit_xsrf` cookie) and
   /_stcore/host-config, keeping every Set-Cookie in the tab's cookie jar (a load balancer's
   affinity cookie included).
2. Open ws(s)://host/_stcore/stream with Sec-WebSocket-Protocol `streamlit, <xsrf cookie>` and, on
   a reconnect, `, <last session id>` so the server can resume the session. The server selects
   `streamlit`; the second entry is only compared with the cookie to read st.login's auth cookie.
3. Send BackMsg.rerun_script (a ClientState): the first one names the page by its URL path
   (`page_name`) with the query string; later ones name it by the `page_script_hash` the
   `navigation` ForwardMsg gave, and carry the query string the server last set
   (`page_info_changed`), as the browser's address bar would.
4. Read ForwardMsgs until the run finishes: `new_session` starts each run (its
   metadata.run.script_run_id names the run), deltas draw elements, `script_finished` ends it.
   FINISHED_EARLY_FOR_RERUN means another run follows, so the wait goes on.
5. The message cache: the server replaces a cacheable new_element delta by a `ref_hash` message
   only when the client listed that hash in ClientState.cached_message_hashes
   (runtime/scriptrunner_utils/script_run_context.py, ScriptRunContext.enqueue). With
   `message_cache=True` the client keeps what it needs from each cacheable message, announces
   the hashes and expires them after `max_cached_message_age` runs, like the frontend; with
   False it announces nothing and the server never sends a reference.

Only the fields a load test needs are read from each ForwardMsg (the upb protobuf runtime parses
in C and builds Python objects only for the fields touched).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from google.protobuf.message import DecodeError
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.Slider_pb2 import Slider
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin, Subprotocol

STREAM_PATH: Final = "/_stcore/stream"
HEALTH_PATH: Final = "/_stcore/health"
HOST_CONFIG_PATH: Final = "/_stcore/host-config"
XSRF_COOKIE: Final = "_streamlit_xsrf"
PLACEHOLDER_TOKEN: Final = "PLACEHOLDER_AUTH_TOKEN"  # what the frontend sends when it has no XSRF cookie
DEFAULT_CACHE_AGE: Final = 2  # global.maxCachedMessageAge's default; new_session.config says the real one
USER_AGENT: Final = "torchlab-load/1 (bench.stclient)"

STATUS_NAMES: Final = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "finished",
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "fragment",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile_error",
}


class ClientError(Exception):
    """Base of what a simulated student can run into; `kind` names it in reports."""

    kind = "error"


class ConnectFailed(ClientError):
    """The HTTP requests or the websocket handshake failed (refused, reset, bad status)."""

    kind = "connect_failed"


class Disconnected(ClientError):
    """The websocket closed while the client was sending or waiting."""

    kind = "disconnect"

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"websocket closed (code {code}{', ' + reason if reason else ''})")
        self.code = code


class RunTimeout(ClientError):
    """No script_finished for the requested run within the time allowed."""

    kind = "timeout"


class ProtocolError(ClientError):
    """The server sent something the browser could not handle (bad frame, cache miss, ...)."""

    kind = "protocol"


# ---------------------------------------------------------------------------------------------
# HTTP: a cookie jar and a minimal GET (the same event loop as the websockets, no extra threads)


class CookieJar:
    """The cookies one simulated browser holds for one site: name -> value.

    Path, domain and expiry are ignored (one site, minutes long); `Max-Age=0` deletes, as a
    browser would. The same jar goes with HTTP requests and the websocket handshake.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def update(self, set_cookie_headers: Iterable[str]) -> None:
        """Store (or delete) the cookies named by Set-Cookie header values."""
        for header in set_cookie_headers:
            pair, *attributes = header.split(";")
            name, sep, value = pair.partition("=")
            name = name.strip()
            if not sep or not name:
                continue
            expired = any(a.strip().lower().replace(" ", "") == "max-age=0" for a in attributes)
            if expired:
                self.values.pop(name, None)
            else:
                self.values[name] = value.strip()

    def header(self) -> str:
        """Return the Cookie request header value ('' when the jar is empty)."""
        return "; ".join(f"{name}={value}" for name, value in self.values.items())

    def get(self, name: str) -> str | None:
        """Return one cookie's value, or None."""
        return self.values.get(name)


@dataclass(frozen=True)
class HttpResponse:
    """Status code, headers (lower-case names) and body of one HTTP response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _ssl_context(scheme: str) -> ssl.SSLContext | None:
    """Return a default TLS context for https/wss, None for plain http/ws."""
    return ssl.create_default_context() if scheme in {"https", "wss"} else None


async def http_get(url: str, jar: CookieJar, timeout: float = 30.0) -> HttpResponse:
    """GET url over HTTP/1.1 (Connection: close), sending the jar's cookies and storing Set-Cookie."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", f"User-Agent: {USER_AGENT}", "Accept: */*", "Connection: close"]
    if cookies := jar.header():
        lines.append(f"Cookie: {cookies}")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=_ssl_context(parts.scheme))
            try:
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                raw = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as e:
        raise ConnectFailed(f"GET {url}: {e!r}") from e
    response = _parse_http(raw, url)
    jar.update(value for name, value in response.headers if name == "set-cookie")
    return response


def _parse_http(raw: bytes, url: str) -> HttpResponse:
    """Split a raw HTTP/1.1 response into status, headers and body (the body is not de-chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError) as e:
        raise ConnectFailed(f"GET {url}: no HTTP status line in {status_line[:80]!r}") from e
    headers = tuple(
        (name.strip().lower(), value.strip()) for name, _, value in (h.partition(":") for h in header_lines) if name
    )
    return HttpResponse(status, headers, body)


# ---------------------------------------------------------------------------------------------
# What the client reads from elements


@dataclass(frozen=True)
class NumericWidget:
    """A numeric control a student can move: a slider, select_slider or number_input, and its allowed values."""

    id: str
    kind: str  # "slider", "select_slider" or "number_input"
    label: str
    lo: float
    hi: float
    step: float
    is_int: bool
    width: int = 1  # 2 for a range slider
    options: tuple[str, ...] = ()  # a select_slider's formatted options
    fragment_id: str = ""  # the st.fragment the widget is drawn in; moving it reruns that fragment only
    value: tuple[float, ...] = ()  # the value drawn (a select_slider's option indexes)

    def nudged_state(self, rng: random.Random, current: tuple[float, ...] | None = None) -> WidgetState:
        """Return the WidgetState after the student moved this control one or two steps from `current` (or its drawn value)."""
        start = current or self.value
        if len(start) != self.width:
            return self.random_state(rng)
        moved = [min(self.hi, max(self.lo, v + rng.choice((-2, -1, 1, 2)) * (self.step or 1))) for v in start]
        return self.state_for(tuple(sorted(moved)))

    def state_for(self, values: tuple[float, ...]) -> WidgetState:
        """Return the WidgetState that sets this control to `values` (one per thumb; option indexes for a select_slider)."""
        state = WidgetState(id=self.id)
        if self.kind == "select_slider":
            state.string_array_value.data.extend(self.options[round(v)] for v in values)
        elif self.kind == "slider":
            state.double_array_value.data.extend(float(round(v)) if self.is_int else round(v, 12) for v in values)
        elif self.is_int:
            state.int_value = round(values[0])
        else:
            state.double_value = round(values[0], 12)
        return state

    def random_state(self, rng: random.Random) -> WidgetState:
        """Return the WidgetState the browser would send after the student moved this control to a random allowed value."""
        state = WidgetState(id=self.id)
        if self.kind == "select_slider":
            picks = sorted(rng.randrange(len(self.options)) for _ in range(self.width))
            state.string_array_value.data.extend(self.options[i] for i in picks)
        elif self.kind == "slider":
            state.double_array_value.data.extend(sorted(self._random_value(rng) for _ in range(self.width)))
        elif self.is_int:
            state.int_value = int(self._random_value(rng))
        else:
            state.double_value = self._random_value(rng)
        return state

    def _random_value(self, rng: random.Random) -> float:
        """Return a uniformly drawn value of lo + k * step within [lo, hi]."""
        steps = int((self.hi - self.lo) / self.step + 1e-9) if self.step > 0 else 0
        value = self.lo + rng.randint(0, max(steps, 0)) * self.step
        return float(round(value)) if self.is_int else round(value, 12)


def _values_of(state: WidgetState, widget: NumericWidget) -> tuple[float, ...]:
    """Return the values a WidgetState sets (option indexes for a select_slider)."""
    kind = state.WhichOneof("value")
    if kind == "string_array_value":
        return tuple(float(widget.options.index(v)) for v in state.string_array_value.data)
    if kind == "double_array_value":
        return tuple(state.double_array_value.data)
    return (float(getattr(state, kind)),) if kind else ()


def numeric_widget(element: Element, fragment_id: str) -> NumericWidget | None:
    """Return the movable numeric control an element draws, or None (another element, disabled, in a form, no bounds)."""
    kind = element.WhichOneof("type")
    if kind == "slider":
        return _slider_widget(element.slider, fragment_id)
    if kind == "number_input":
        n = element.number_input
        if n.disabled or n.form_id or n.ignore_rerun or not (n.has_min and n.has_max) or n.max < n.min:
            return None
        value = (n.value,) if n.set_value else (n.default,)
        return NumericWidget(
            n.id,
            "number_input",
            n.label,
            n.min,
            n.max,
            n.step or 1.0,
            n.data_type == NumberInput.INT,
            fragment_id=fragment_id,
            value=value,
        )
    return None


def _slider_widget(s: Slider, fragment_id: str) -> NumericWidget | None:
    """Return a slider's NumericWidget; None for date/time sliders, disabled ones and those in forms."""
    if s.disabled or s.form_id or s.ignore_rerun:
        return None
    width = max(1, len(s.value) or len(s.default))
    if s.type == Slider.SELECT_SLIDER:
        if not s.options:
            return None
        return NumericWidget(
            s.id,
            "select_slider",
            s.label,
            0,
            len(s.options) - 1,
            1,
            True,
            width,
            tuple(s.options),
            fragment_id,
            tuple(s.value or s.default),
        )
    if s.data_type not in {Slider.INT, Slider.FLOAT} or s.max < s.min:
        return None
    return NumericWidget(
        s.id,
        "slider",
        s.label,
        s.min,
        s.max,
        s.step,
        s.data_type == Slider.INT,
        width,
        fragment_id=fragment_id,
        value=tuple(s.value or s.default),
    )


@dataclass(frozen=True)
class Seen:
    """What the load test takes from one element: a movable control, or an error or warning shown to the student."""

    widget: NumericWidget | None = None
    exception: str | None = None  # an exception element (an uncaught error): "Type: message"
    warning: str | None = None  # "alert" (st.warning) or "exception" (an exception element marked is_warning)
    error_alert: str | None = None  # st.error: a translated error the app chose to show (its first line)


NOTHING: Final = Seen()


def seen_in(element: Element, fragment_id: str) -> Seen:
    """Return what matters in one new element (NOTHING for the many that do not matter)."""
    kind = element.WhichOneof("type")
    if kind == "alert":
        alert_format = element.alert.format
        if alert_format == Alert.WARNING:
            return Seen(warning="alert")
        if alert_format == Alert.ERROR:
            return Seen(error_alert=(element.alert.body.splitlines() or [""])[0][:300])
        return NOTHING
    if kind == "exception":
        e = element.exception
        if e.is_warning:
            return Seen(warning="exception")
        return Seen(exception=f"{e.type}: {e.message.splitlines()[0] if e.message else ''}"[:300])
    if kind in {"slider", "number_input"}:
        widget = numeric_widget(element, fragment_id)
        return Seen(widget=widget) if widget else NOTHING
    return NOTHING


@dataclass
class RunResult:
    """What one script run showed (or, as a client's `totals`, everything it was shown) and how long it took."""

    seconds: float = 0.0
    status: str = ""  # finished, fragment or compile_error
    exceptions: list[str] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    error_alerts: int = 0
    error_texts: list[str] = field(default_factory=list)
    page_not_found: int = 0
    messages: int = 0
    bytes: int = 0
    cache_refs: int = 0
    finished: int = 0  # runs finished (totals only)
    early: int = 0  # FINISHED_EARLY_FOR_RERUN: a run cut short by the next request (totals only)

    def add_seen(self, seen: Seen) -> None:
        """Count an error or warning element."""
        if seen.exception is not None:
            self.exceptions.append(seen.exception)
        elif seen.warning is not None:
            self.warnings[seen.warning] = self.warnings.get(seen.warning, 0) + 1
        elif seen.error_alert is not None:
            self.error_alerts += 1
            self.error_texts.append(seen.error_alert)


@dataclass
class _CacheEntry:
    """One cached message, as the frontend's ForwardMsgCache keeps it (here: only what we read from it)."""

    seen: Seen
    run_count: int
    fragment_id: str


# ---------------------------------------------------------------------------------------------
# The client


class StreamlitClient:
    """One browser tab on a Streamlit app: open a link, rerun, move numeric controls, time each run."""

    def __init__(
        self,
        base_url: str,
        link: str,
        *,
        jar: CookieJar | None = None,
        locale: str = "en-US",
        message_cache: bool = True,
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(link)
        self.base_url = base_url.rstrip("/")
        self.link = link
        self.page_name = parts.path.strip("/")
        self.query_string = parts.query
        self.jar = jar if jar is not None else CookieJar()
        self.locale = locale
        self.message_cache = message_cache
        self.timeout = timeout
        self.ws: ClientConnection | None = None
        self.session_id = ""
        self.page_script_hash = ""
        self.widgets: dict[str, NumericWidget] = {}  # numeric controls drawn by the last finished run
        self.moved: dict[str, tuple[float, ...]] = {}  # where this student last put each control
        self.totals = RunResult()  # everything this client was shown, over all runs
        self._next_widgets: dict[str, NumericWidget] = {}
        self._cache: dict[str, _CacheEntry] = {}
        self._cache_age = DEFAULT_CACHE_AGE
        self._run_count = 0
        self._run_id: str | None = None  # script_run_id of the run started after our latest request
        self._fragment_ids: tuple[str, ...] = ()
        self._current = RunResult()

    @property
    def connected(self) -> bool:
        """Return whether the websocket is open (as far as this client knows)."""
        return self.ws is not None

    # -- the three actions a student takes -----------------------------------------------------

    async def open(self) -> RunResult:
        """Load the page like a browser tab; return the first run, timed from the first HTTP request.

        After a disconnect this is the frontend's reconnect: the same cookies, the session id as
        the third subprotocol entry, and a rerun of the current page.
        """

        async def load() -> None:
            await self._http_pings()
            await self._connect()
            await self.send_rerun()

        return await self._timed(load(), f"page load of {self.link} took over {self.timeout:.0f} s")

    async def rerun(self) -> RunResult:
        """Rerun the page (the student presses R or the app reruns itself); return the run, timed from the send."""
        return await self._timed_run(())

    async def change(self, rng: random.Random, jump_share: float = 1.0) -> tuple[RunResult, NumericWidget, bool] | None:
        """Move one random numeric control; return the run it caused, the control and whether it jumped (None: no control).

        With probability `jump_share` the control goes to a random allowed value; otherwise it is
        nudged one or two steps from where this student last put it, as a student exploring does.
        """
        if not self.widgets:
            return None
        widget = rng.choice(sorted(self.widgets.values(), key=lambda w: w.id))
        jump = rng.random() < jump_share
        state = widget.random_state(rng) if jump else widget.nudged_state(rng, self.moved.get(widget.id))
        self.moved[widget.id] = _values_of(state, widget)
        result = await self._timed_run((state,), widget.fragment_id)
        return result, widget, jump

    async def close(self) -> None:
        """Close the websocket (the student closes the tab)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()

    # -- the protocol ---------------------------------------------------------------------------

    async def send_rerun(self, widget_states: Sequence[WidgetState] = (), fragment_id: str = "") -> None:
        """Send a BackMsg.rerun_script as the browser builds it (App.sendRerunBackMsg); do not wait."""
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query_string
        if self.page_script_hash:
            state.page_script_hash = self.page_script_hash
        else:
            state.page_name = self.page_name
        state.widget_states.widgets.extend(widget_states)
        if fragment_id:
            state.fragment_id = fragment_id
        if self.message_cache:
            state.cached_message_hashes.extend(self._cache)
        context = state.context_info
        context.locale = self.locale
        context.timezone = "UTC"
        context.url = f"{self.base_url}/{self.page_name}" + (f"?{self.query_string}" if self.query_string else "")
        context.color_scheme = "light"
        self._run_id = None
        self._current = RunResult()
        ws = self._require_ws()
        try:
            await ws.send(msg.SerializeToString())
        except ConnectionClosed as e:
            raise self._lost(e) from e

    def _lost(self, e: ConnectionClosed) -> Disconnected:
        """Forget the closed websocket; return the Disconnected error that reports it."""
        self.ws = None
        return Disconnected(e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else "")

    async def wait_run(self) -> RunResult:
        """Read ForwardMsgs until the run asked for by the latest send_rerun finishes; return what it showed."""
        ws = self._require_ws()
        try:
            while True:
                data = await ws.recv()
                if self.handle(data):
                    return self._current
        except ConnectionClosed as e:
            raise self._lost(e) from e

    async def pump(self) -> None:
        """Read and handle ForwardMsgs until the websocket closes (a hog's reader; counts go to `totals`)."""
        ws = self._require_ws()
        try:
            async for data in ws:
                self.handle(data)
        except ConnectionClosed as e:
            raise self._lost(e) from e
        self.ws = None
        raise Disconnected(ws.close_code, ws.close_reason or "")

    def handle(self, data: bytes | str) -> bool:
        """Apply one ForwardMsg; return True when it finishes the run asked for by the latest send_rerun."""
        if isinstance(data, str):
            raise ProtocolError("text frame on the stream (Streamlit sends binary protobufs only)")
        msg = ForwardMsg()
        try:
            msg.ParseFromString(data)
        except DecodeError as e:
            raise ProtocolError(f"undecodable ForwardMsg ({len(data)} bytes)") from e
        for result in (self._current, self.totals):
            result.messages += 1
            result.bytes += len(data)
        kind = msg.WhichOneof("type")
        if kind == "delta":
            self._on_delta(msg)
        elif kind == "ref_hash":
            self._on_ref(msg)
        elif kind == "new_session":
            self._on_new_session(msg)
        elif kind == "script_finished":
            return self._on_finished(msg)
        elif kind == "navigation":
            self.page_script_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "page_not_found":
            self._current.page_not_found += 1
            self.totals.page_not_found += 1
        elif kind == "session_event" and msg.session_event.WhichOneof("type") == "script_compilation_exception":
            error = msg.session_event.script_compilation_exception
            self._add(Seen(exception=f"{error.type}: {error.message}"[:300]))
        return False

    def _on_delta(self, msg: ForwardMsg) -> None:
        """Read a new element: remember a numeric control, count errors and warnings, cache it if cacheable."""
        delta = msg.delta
        if delta.WhichOneof("type") != "new_element":
            return
        seen = seen_in(delta.new_element, delta.fragment_id)
        if self.message_cache and msg.metadata.cacheable and msg.hash:
            entry = self._cache.get(msg.hash)
            if entry is None:
                self._cache[msg.hash] = _CacheEntry(seen, self._run_count, delta.fragment_id)
            else:
                entry.run_count = self._run_count
        self._add(seen)

    def _on_ref(self, msg: ForwardMsg) -> None:
        """Resolve a reference to a cached message (the frontend fails hard on a miss, and so do we)."""
        entry = self._cache.get(msg.ref_hash)
        if entry is None:
            raise ProtocolError(f"cached ForwardMsg miss (ref_hash {msg.ref_hash})")
        entry.run_count = self._run_count
        self._current.cache_refs += 1
        self.totals.cache_refs += 1
        self._add(entry.seen)

    def _add(self, seen: Seen) -> None:
        """Record what an element showed, in this run and in the totals."""
        if seen is NOTHING:
            return
        if seen.widget is not None:
            self._next_widgets[seen.widget.id] = seen.widget
            return
        self._current.add_seen(seen)
        self.totals.add_seen(seen)

    def _on_new_session(self, msg: ForwardMsg) -> None:
        """Start a run: note its id, the session id and cache age; a full run redraws every control."""
        session = msg.new_session
        if session.initialize.session_id:
            self.session_id = session.initialize.session_id
        self._cache_age = session.config.max_cached_message_age or DEFAULT_CACHE_AGE
        self._run_id = msg.metadata.run.script_run_id
        self._fragment_ids = tuple(msg.metadata.run.fragment_ids)
        self._next_widgets = dict(self.widgets) if self._fragment_ids else {}

    def _on_finished(self, msg: ForwardMsg) -> bool:
        """End a run; return True if it is the run asked for (not cut short, not one from before the request)."""
        status = msg.script_finished
        if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            self.totals.early += 1
            return False
        self.totals.finished += 1
        run_id = msg.metadata.run.script_run_id
        if self._run_id is None or (run_id and run_id != self._run_id):
            return False
        self._expire_cache()
        self.widgets = self._next_widgets
        self._current.status = STATUS_NAMES.get(status, str(status))
        return True

    def _expire_cache(self) -> None:
        """Age the message cache by one run and drop what was not used for `max_cached_message_age` runs."""
        self._run_count += 1
        for digest, entry in list(self._cache.items()):
            if self._fragment_ids and entry.fragment_id not in self._fragment_ids:
                continue
            if self._run_count - entry.run_count > self._cache_age:
                del self._cache[digest]

    # -- plumbing -------------------------------------------------------------------------------

    async def _timed_run(self, widget_states: Sequence[WidgetState], fragment_id: str = "") -> RunResult:
        """Send a rerun and wait for it; return the run, timed from the send to its script_finished."""
        return await self._timed(self.send_rerun(widget_states, fragment_id), f"no script_finished within {self.timeout:.0f} s")

    async def _timed(self, request: Coroutine[Any, Any, None], timeout_message: str) -> RunResult:
        """Await `request`, then the run it asked for; return the run, timed from the start (RunTimeout past self.timeout)."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await request
                result = await self.wait_run()
        except TimeoutError as e:
            raise RunTimeout(timeout_message) from e
        result.seconds = time.perf_counter() - start
        return result

    async def _http_pings(self) -> None:
        """Fetch the page, /_stcore/health and /_stcore/host-config as the browser does before connecting."""
        page = await http_get(
            f"{self.base_url}{urlsplit(self.link).path or '/'}" + (f"?{self.query_string}" if self.query_string else ""),
            self.jar,
            self.timeout,
        )
        health = await http_get(self.base_url + HEALTH_PATH, self.jar, self.timeout)
        await http_get(self.base_url + HOST_CONFIG_PATH, self.jar, self.timeout)
        if page.status >= 400 or health.status != 200:
            raise ConnectFailed(f"page HTTP {page.status}, health HTTP {health.status} {health.body[:80]!r}")

    async def _connect(self) -> None:
        """Open the websocket with the browser's subprotocol list, cookies and same-site Origin."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        tokens = ["streamlit", self.jar.get(XSRF_COOKIE) or PLACEHOLDER_TOKEN] + ([self.session_id] if self.session_id else [])
        headers = {"Cookie": cookie} if (cookie := self.jar.header()) else {}
        try:
            self.ws = await connect(
                f"{scheme}://{parts.netloc}{parts.path}{STREAM_PATH}",
                subprotocols=[Subprotocol(t) for t in tokens],
                additional_headers=headers,
                origin=Origin(f"{parts.scheme}://{parts.netloc}"),
                user_agent_header=USER_AGENT,
                proxy=None,  # straight to the server (websockets would otherwise follow $https_proxy and friends)
                ping_interval=None,  # the server pings; a browser does not
                max_size=None,  # the server bounds its messages (server.maxMessageSize)
                open_timeout=self.timeout,
            )
        except (OSError, InvalidHandshake, TimeoutError) as e:
            raise ConnectFailed(f"websocket handshake: {e!r}") from e
        if self.ws.response is not None:
            self.jar.update(self.ws.response.headers.get_all("Set-Cookie"))

    def _require_ws(self) -> ClientConnection:
        """Return the open websocket, or raise Disconnected when there is none."""
        if self.ws is None:
            raise Disconnected(None, "not connected")
        return self.ws
