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
runs that random slider jumps start: changes to cheap experiments waited a median 20 s.)
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
# A waiter re-checks first after the short, at most after the long interval; a run that ends in this
# process wakes its waiters at once, so the long interval only delays hand-overs between processes.
# (Polling every 25 ms, 50 waiting students queued on the folder's mutex: half the samples of a profile.)
POLL_SECONDS = (0.005, 0.1)
MAX_ESTIMATE_SECONDS = 3600.0  # a run's estimate never puts it further back than this


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
        return me in eligible and eligible.index(me) < slots - len(running)

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
        self._changed = threading.Condition()  # wakes this process's waiters when one of its tickets leaves
        self._mine: set[str] = set()  # tokens of this process's tickets: never stale
        self._last_stale_check = 0.0

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
            self._wait_turn(ticket, on_wait)
            ticket = self._rename(ticket, RUNNING)
            yield
        finally:
            self._leave(ticket, fd)

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
        return ticket, fd

    def _wait_turn(self, ticket: Ticket, on_wait: Callable[[int], None] | None) -> None:
        pause, last_position = POLL_SECONDS[0], 0
        while True:
            with self._locked():
                self._drop_stale()
                snapshot = self._read()
                if snapshot.admissible(ticket, self.slots):
                    return
                position = snapshot.position(ticket)
            if on_wait is not None and position != last_position:
                on_wait(position)
                last_position = position
            with self._changed:
                self._changed.wait(pause)
            pause = min(2 * pause, POLL_SECONDS[1])

    def _rename(self, ticket: Ticket, state: str) -> Ticket:
        renamed = Ticket(ticket.arrival, ticket.due, ticket.kind, state, ticket.owner, ticket.token)
        with self._locked():
            os.rename(self.folder / ticket.name, self.folder / renamed.name)
        return renamed

    def _leave(self, ticket: Ticket, fd: int) -> None:
        with self._locked():
            if ticket.kind == EXCLUSIVE and ticket.state == RUNNING:
                (self.folder / "last_exclusive_end").write_text(str(time.monotonic_ns()))
            (self.folder / ticket.name).unlink(missing_ok=True)
            self._mine.discard(ticket.token)
            os.close(fd)
        with self._changed:
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
