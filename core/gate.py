"""The device gate: admission to one device, shared by every process of the host through file locks.

Replicas of the app on one machine (or containers sharing a folder on one GPU host) must agree on
who computes: a timing experiment runs alone on the device even when another replica has students,
and only `slots` shared runs use it at once. Each run is a ticket, a file in the gate's folder whose
name says when it arrived, whether it is exclusive, whether it runs, and whose it is. The owner holds
an flock on its ticket for as long as it exists, so the kernel tells a crashed owner's ticket from a
live one. Every change of the folder happens under one more flock (the folder's mutex).

Admission is phase-fair rather than first come, first served, so that students who loop timing runs
cannot starve a bystander: exclusive runs go one at a time in arrival order; a shared run waits for
an exclusive run that arrived before it, but once an exclusive run ends, every shared run that was
already waiting goes before the next exclusive one. A shared run therefore waits behind at most one
exclusive run, and one owner (a student's session) may have at most one exclusive run queued.

Shared runs go in the order of their due time, arrival plus the run's estimated seconds (earliest
due first): a short run is not stuck behind a long one that arrived just before it, and a long run
is overtaken only by runs that arrive before its own estimated length has passed, so none starves.
(Under a class's load, first come, first served put every quick change behind the few 10-second
runs that random slider jumps start: changes to cheap experiments waited a median 20 s.) For the
same reason a long run (estimated LONG_SECONDS or more, up to ~15 s within the work budget) may fill
every slot but one: two of them would otherwise hold both slots of a 2-core host while every quick
change waits.

Within a process, one waiting thread at a time reads the folder on behalf of all the process's
waiting runs and starts those that may start (see DeviceGate._wait_turn).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SHARED, EXCLUSIVE = "s", "x"
WAITING, RUNNING = "w", "r"
STALE_CHECK_SECONDS = 0.5  # how often a waiting process looks for tickets whose owner died
# How often a process re-reads the folder for its waiting runs: first after the short interval, backing
# off to the long one while nothing moves; a run that ends in this process triggers a reading at once,
# so the long interval only delays hand-overs between processes.
POLL_SECONDS = (0.005, 0.05)
MAX_ESTIMATE_SECONDS = 3600.0  # a run's estimate never puts it further back than this
LONG_SECONDS = 1.0  # a shared run estimated this long or longer is long: long runs leave one slot to the others


class OwnerBusy(Exception):
    """Raised when an owner asks for a second exclusive run while one of theirs is queued or running."""


@dataclass(frozen=True)
class Ticket:
    """One run's place at the gate, parsed from its file name."""

    arrival: int  # time.monotonic_ns() when it asked (one clock for every process of the host)
    due: int  # arrival plus the run's estimated length, ns: shared runs are admitted in this order
    kind: str  # SHARED | EXCLUSIVE
    state: str  # WAITING | RUNNING
    owner: str  # hash of the owner's id, "-" for none
    token: str  # unique

    @property
    def name(self) -> str:
        """Return the ticket's file name."""
        return f"{self.arrival:020d}.{self.due:020d}.{self.kind}.{self.state}.{self.owner}.{self.token}"

    @classmethod
    def parse(cls, name: str) -> Ticket | None:
        """Return the ticket a file name describes, or None for any other file."""
        parts = name.split(".")
        if len(parts) != 6 or not (parts[0].isdigit() and parts[1].isdigit()) or parts[2] not in (SHARED, EXCLUSIVE):
            return None
        if parts[3] not in (WAITING, RUNNING):
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4], parts[5])

    @property
    def long(self) -> bool:
        """Return whether the run is estimated to take LONG_SECONDS or more."""
        return self.due - self.arrival >= LONG_SECONDS * 1e9

    @property
    def order(self) -> tuple[int, int]:
        """Return the key shared runs are admitted by: earliest due first, then earliest arrival."""
        return self.due, self.arrival


@dataclass(frozen=True)
class Snapshot:
    """The gate's tickets and the end of the last exclusive run, read under the mutex."""

    tickets: tuple[Ticket, ...]
    last_exclusive_end: int

    def admissible(self, me: Ticket, slots: int) -> bool:
        """Return whether `me` (waiting) may start now under the phase-fair rule."""
        running = [t for t in self.tickets if t.state == RUNNING]
        if any(t.kind == EXCLUSIVE for t in running):
            return False
        waiting = sorted((t for t in self.tickets if t.state == WAITING), key=lambda t: t.arrival)
        if me.kind == EXCLUSIVE:
            first = next(t for t in waiting if t.kind == EXCLUSIVE)
            bar = max(me.arrival, self.last_exclusive_end)
            return not running and first == me and not any(t.kind == SHARED and t.arrival < bar for t in waiting)
        eligible = sorted((t for t in waiting if t.kind == SHARED and not self._held_back(t, waiting)), key=lambda t: t.order)
        free = slots - len(running)
        # Long runs may fill every slot but one, so a quick run always finds a slot within one quick run's time.
        long_free = slots - 1 - sum(1 for t in running if t.long) if slots > 1 else slots
        for t in eligible:
            if free <= 0:
                return False
            if t.long:
                if long_free <= 0:
                    continue
                long_free -= 1
            if t == me:
                return True
            free -= 1
        return False

    def _held_back(self, shared: Ticket, waiting: list[Ticket]) -> bool:
        """A shared ticket waits for an exclusive one that came first, unless an exclusive run ended since."""
        if shared.arrival <= self.last_exclusive_end:
            return False
        return any(t.kind == EXCLUSIVE and t.arrival < shared.arrival for t in waiting)

    def position(self, me: Ticket) -> int:
        """Return the 1-based place of `me` among the waiting tickets: how many go before it (by due time), plus one."""
        return 1 + sum(1 for t in self.tickets if t.state == WAITING and t.order < me.order)


class DeviceGate:
    """Admission to one device for every process that uses the same folder: `slots` shared runs, or one exclusive run.

    Processes that share a device must use the same folder (TORCHLAB_LOCK_DIR); each passes its own
    `slots`, so they should agree on it.
    """

    def __init__(self, slots: int, folder: str | os.PathLike[str] | None = None) -> None:
        self.slots = max(1, slots)
        self.folder = Path(folder) if folder is not None else default_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._mutex_fd = os.open(self.folder / "mutex", os.O_RDWR | os.O_CREAT, 0o666)
        self._mutex = threading.Lock()  # flock is per open file; threads of one process take turns first
        self._mine: set[str] = set()  # tokens of this process's tickets: never stale (changed under the mutex)
        self._last_stale_check = 0.0
        # This process's waiters share one reader of the folder (see _wait_turn). Under _changed:
        self._changed = threading.Condition()
        self._tickets: dict[str, Ticket] = {}  # token -> this process's ticket as it is named now
        self._positions: dict[str, int] = {}  # token -> place in the queue, for the tickets still waiting
        self._polling = False  # a thread of this process is reading the folder for all of them
        self._next_poll = 0.0  # monotonic time of the next reading (0: at once)
        self._pause = POLL_SECONDS[0]

    @contextmanager
    def hold(
        self,
        exclusive: bool = False,
        on_wait: Callable[[int], None] | None = None,
        owner: str | None = None,
        seconds: float = 0.0,
    ) -> Iterator[None]:
        """Hold a place on the device for the duration of the with-block.

        `seconds` is the run's estimated length: a shared run is admitted by arrival plus it. An
        exclusive run's is ignored (exclusive runs go in arrival order). `on_wait(position)` hears
        each new place in the queue while the run waits; it may raise (a page that is rerun stops
        waiting), and the ticket is then withdrawn. Raises OwnerBusy when `owner` asks for a second
        exclusive run while one of theirs is queued or running.
        """
        ticket, fd = self._enter(EXCLUSIVE if exclusive else SHARED, owner, 0.0 if exclusive else seconds)
        try:
            self._wait_turn(ticket.token, on_wait)
            yield
        finally:
            self._leave(ticket.token, fd)

    def waiting(self) -> int:
        """Return how many runs are queued right now, in every process."""
        with self._locked():
            return sum(1 for t in self._read().tickets if t.state == WAITING)

    # -- tickets ---------------------------------------------------------------------------------

    def _enter(self, kind: str, owner: str | None, seconds: float) -> tuple[Ticket, int]:
        owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:16] if owner else "-"
        with self._locked():
            self._drop_stale()
            if kind == EXCLUSIVE and owner:
                tickets = self._read().tickets
                if any(t.kind == EXCLUSIVE and t.owner == owner_hash for t in tickets):
                    raise OwnerBusy(owner)
            arrival = time.monotonic_ns()
            due = arrival + int(min(max(seconds, 0.0), MAX_ESTIMATE_SECONDS) * 1e9)
            ticket = Ticket(arrival, due, kind, WAITING, owner_hash, uuid.uuid4().hex)
            fd = os.open(self.folder / ticket.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._mine.add(ticket.token)
        with self._changed:
            self._tickets[ticket.token] = ticket
            self._positions[ticket.token] = 0
            self._next_poll = 0.0
        return ticket, fd

    def _wait_turn(self, token: str, on_wait: Callable[[int], None] | None) -> None:
        """Return once the ticket runs. One waiting thread of the process at a time reads the folder for all.

        (When each waiting run read the folder itself, every 5-100 ms, under the folder's flock and
        competing for its process's GIL, 60 queued runs stalled the hand-overs: under 150-200 students
        a run that could start waited seconds to notice, and the queue grew to 20 s.)
        """
        last_position = 0
        while True:
            poll = False
            with self._changed:
                while True:
                    if self._tickets[token].state == RUNNING:
                        return
                    position = self._positions[token]
                    if on_wait is not None and position != last_position:
                        break
                    if self._polling:
                        self._changed.wait(POLL_SECONDS[1])
                        continue
                    wait = self._next_poll - time.monotonic()
                    if wait <= 0:
                        self._polling = poll = True
                        break
                    self._changed.wait(wait)
            if poll:
                self._poll()
            elif on_wait is not None:
                on_wait(position)  # may raise: hold() then withdraws the ticket
                last_position = position

    def _poll(self) -> None:
        """Read the folder once, start every waiting ticket of this process that may start, note the others' places."""
        admitted = False
        try:
            with self._locked():
                self._drop_stale()
                snapshot = self._read()
                with self._changed:
                    waiting = [t for t in snapshot.tickets if t.token in self._positions and t.state == WAITING]
                for ticket in sorted(waiting, key=lambda t: t.order):
                    if snapshot.admissible(ticket, self.slots):
                        running = Ticket(ticket.arrival, ticket.due, ticket.kind, RUNNING, ticket.owner, ticket.token)
                        os.rename(self.folder / ticket.name, self.folder / running.name)
                        others = tuple(t for t in snapshot.tickets if t.token != ticket.token)
                        snapshot = Snapshot((*others, running), snapshot.last_exclusive_end)
                        admitted = True
                        with self._changed:
                            self._tickets[ticket.token] = running
                            self._positions.pop(ticket.token, None)
                with self._changed:
                    for ticket in waiting:
                        if ticket.token in self._positions:
                            self._positions[ticket.token] = snapshot.position(ticket)
        finally:
            with self._changed:
                self._polling = False
                # Back off while nothing moves; a run that ends in this process sets _next_poll to 0.
                self._pause = POLL_SECONDS[0] if admitted else min(2 * self._pause, POLL_SECONDS[1])
                self._next_poll = time.monotonic() + self._pause
                self._changed.notify_all()

    def _leave(self, token: str, fd: int) -> None:
        with self._locked():  # _poll renames this process's tickets under the folder's mutex only
            with self._changed:
                ticket = self._tickets.pop(token)
                self._positions.pop(token, None)
            if ticket.kind == EXCLUSIVE and ticket.state == RUNNING:
                (self.folder / "last_exclusive_end").write_text(str(time.monotonic_ns()))
            (self.folder / ticket.name).unlink(missing_ok=True)
            self._mine.discard(ticket.token)
            os.close(fd)
        with self._changed:
            self._next_poll, self._pause = 0.0, POLL_SECONDS[0]
            self._changed.notify_all()

    # -- the folder ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            fcntl.flock(self._mutex_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._mutex_fd, fcntl.LOCK_UN)

    def _read(self) -> Snapshot:
        tickets = tuple(t for t in map(Ticket.parse, os.listdir(self.folder)) if t is not None)
        try:
            last = int((self.folder / "last_exclusive_end").read_text() or 0)
        except (OSError, ValueError):
            last = 0
        return Snapshot(tickets, last)

    def _drop_stale(self) -> None:
        """Delete tickets whose owner process died (nobody holds their flock); call under the mutex."""
        now = time.monotonic()
        if now - self._last_stale_check < STALE_CHECK_SECONDS:
            return
        self._last_stale_check = now
        for ticket in self._read().tickets:
            if ticket.token in self._mine:
                continue
            path = self.folder / ticket.name
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            else:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)


def default_folder() -> Path:
    """Return the folder every process of this host shares when TORCHLAB_LOCK_DIR is not set."""
    return Path(tempfile.gettempdir()) / f"torchlab-gate-{os.getuid()}"
