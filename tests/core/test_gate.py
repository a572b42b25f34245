"""The device gate: slots and exclusive runs, queue places, one queued timing run per owner, phase-fair
admission (a bystander is not starved by students looping timing runs), and one gate across processes."""

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.gate import EXCLUSIVE, RUNNING, SHARED, WAITING, DeviceGate, OwnerBusy, Snapshot, Ticket


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll until condition() holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def hold_in_thread(gate: DeviceGate) -> tuple[threading.Thread, threading.Event]:
    """Start a thread that holds a shared place on the gate until the returned event is set."""
    release, entered = threading.Event(), threading.Event()

    def holder() -> None:
        with gate.hold():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(10)
    return thread, release


def test_slots_at_once_and_exclusive_runs_alone(tmp_path: Path) -> None:
    gate = DeviceGate(slots=2, folder=tmp_path)
    active, peak, exclusive_overlap = [0], [0], []
    lock = threading.Lock()

    def work(exclusive: bool) -> None:
        with gate.hold(exclusive=exclusive):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                if exclusive and active[0] > 1:
                    exclusive_overlap.append(active[0])
            time.sleep(0.02)
            with lock:
                if exclusive and active[0] > 1:
                    exclusive_overlap.append(active[0])
                active[0] -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [i % 4 == 0 for i in range(24)]))
    assert peak[0] == 2
    assert exclusive_overlap == []
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("mutex", "last_exclusive_end")] == []


def test_queue_places_are_reported_and_a_withdrawn_waiter_leaves_the_queue(tmp_path: Path) -> None:
    gate = DeviceGate(slots=1, folder=tmp_path)
    positions: list[int] = []

    def impatient(position: int) -> None:
        positions.append(position)
        raise KeyboardInterrupt  # a page rerun stops the wait from inside on_wait

    first, release = hold_in_thread(gate)
    with pytest.raises(KeyboardInterrupt), gate.hold(on_wait=impatient):
        pass
    assert positions == [1] and gate.waiting() == 0
    waiter = threading.Thread(target=lambda: gate.hold(on_wait=positions.append).__enter__())
    waiter.start()
    wait_until(lambda: len(positions) == 2)
    assert gate.waiting() == 1
    release.set()
    first.join(10)
    waiter.join(10)
    assert positions == [1, 1]


def test_one_owner_has_at_most_one_exclusive_run_queued(tmp_path: Path) -> None:
    gate = DeviceGate(slots=1, folder=tmp_path)
    with gate.hold(exclusive=True, owner="a"):
        with pytest.raises(OwnerBusy), gate.hold(exclusive=True, owner="a"):
            pass
        assert gate.waiting() == 0  # the refused run left no ticket behind
    with gate.hold(exclusive=True, owner="a"):  # the first one is done: allowed again
        pass


def test_a_bystander_waits_for_at_most_one_exclusive_run_while_three_students_loop_them(tmp_path: Path) -> None:
    gate = DeviceGate(slots=2, folder=tmp_path)
    started: list[str] = []  # the order in which runs got the device
    stop = threading.Event()
    lock = threading.Lock()

    def hog(name: str) -> None:
        while not stop.is_set():
            with gate.hold(exclusive=True, owner=name):
                with lock:
                    started.append(name)
                time.sleep(0.03)

    hogs = [threading.Thread(target=hog, args=(f"hog{i}",)) for i in range(3)]
    for h in hogs:
        h.start()
    wait_until(lambda: len(started) >= 3 and gate.waiting() >= 2)  # every hog has one queued
    for _ in range(5):
        with lock:
            before = len(started)
        with gate.hold(owner="bystander"), lock:
            after = len(started)
        assert after - before <= 1, f"{after - before} exclusive runs started while a shared run waited"
    stop.set()
    for h in hogs:
        h.join(10)
    assert {"hog0", "hog1", "hog2"} <= set(started)  # and the hogs were not starved either


def test_a_short_run_is_not_stuck_behind_a_long_one_that_arrived_first(tmp_path: Path) -> None:
    gate = DeviceGate(slots=1, folder=tmp_path)
    order: list[str] = []

    def run(name: str, seconds: float) -> None:
        with gate.hold(seconds=seconds):
            order.append(name)

    first, release = hold_in_thread(gate)
    long = threading.Thread(target=run, args=("long", 30.0))
    long.start()
    wait_until(lambda: gate.waiting() == 1)
    short = threading.Thread(target=run, args=("short", 0.05))
    short.start()
    wait_until(lambda: gate.waiting() == 2)
    release.set()
    for t in (first, long, short):
        t.join(10)
    assert order == ["short", "long"]


def _ticket(arrival_s: float, seconds: float, kind: str = SHARED, state: str = WAITING) -> Ticket:
    """A ticket that arrived at `arrival_s` with an estimate of `seconds` (its token says both, without a dot)."""
    arrival = int(arrival_s * 1e9)
    return Ticket(arrival, arrival + int(seconds * 1e9), kind, state, "-", f"t{int(arrival_s * 1000)}x{int(seconds * 1000)}")


def test_shared_runs_go_by_due_time_so_a_long_run_is_overtaken_only_until_its_estimate_has_passed() -> None:
    long = _ticket(0.0, 5.0)
    early = _ticket(4.0, 0.1)  # due at 4.1 s, before the long run's 5 s: goes first
    late = _ticket(6.0, 0.1)  # arrived after the long run was due: waits for it
    running = _ticket(-1.0, 0.0, state=RUNNING)
    snapshot = Snapshot((running, long, early, late), 0)
    assert snapshot.admissible(early, slots=2) and not snapshot.admissible(long, slots=2)
    assert [snapshot.position(t) for t in (early, long, late)] == [1, 2, 3]
    without_early = Snapshot((running, long, late), 0)
    assert without_early.admissible(long, slots=2) and not without_early.admissible(late, slots=2)
    # Exclusive runs keep arrival order and their phase-fair rule: an estimate changes nothing for them.
    timing = _ticket(1.0, 0.0, kind=EXCLUSIVE)
    assert not Snapshot((long, timing), 0).admissible(timing, slots=2)  # the shared run came first
    assert Ticket.parse(long.name) == long and Ticket.parse("1.s.w.-.x") is None


def test_long_runs_leave_one_slot_to_quick_runs() -> None:
    # Two slots, one long run (estimate >= LONG_SECONDS) running: the next long run waits even though it is due
    # first, and a quick run behind it takes the free slot; with one slot there is no second lane to keep.
    running = _ticket(0.0, 8.0, state=RUNNING)
    long = _ticket(1.0, 2.0)
    quick = _ticket(2.9, 0.3)  # due at 3.2 s, after the long run (3 s)
    snapshot = Snapshot((running, long, quick), 0)
    assert long.long and not quick.long and long.order < quick.order
    assert not snapshot.admissible(long, slots=2) and snapshot.admissible(quick, slots=2)
    assert snapshot.admissible(long, slots=3) and snapshot.admissible(quick, slots=3)  # three slots: two may run long
    idle = Snapshot((long, quick), 0)
    assert idle.admissible(long, slots=2) and idle.admissible(quick, slots=2)
    assert Snapshot((long,), 0).admissible(long, slots=1)
    assert not Snapshot((running, long), 0).admissible(long, slots=1)
    # A quick run that is not first still counts the long one that goes before it.
    second_long = _ticket(0.5, 2.0)  # due at 2.5 s, before the other long run
    assert Snapshot((second_long, long, quick), 0).admissible(quick, slots=2)
    assert not Snapshot((second_long, long, quick), 0).admissible(long, slots=2)


class CountingGate(DeviceGate):
    """A gate that counts its readings of the folder."""

    reads = 0

    def _read(self) -> Snapshot:
        self.reads += 1
        return super()._read()


def test_one_thread_reads_the_folder_for_all_waiters_of_a_process(tmp_path: Path) -> None:
    # Many queued runs must not multiply the readings of the folder (each is taken under its flock):
    # over the same time, 30 waiters cause about as many readings as one.
    def readings_while_waiting(gate: CountingGate, waiters: int) -> int:
        holder, release = hold_in_thread(gate)
        done = threading.Event()

        def wait_once() -> None:
            with gate.hold():
                pass
            done.set()

        threads = [threading.Thread(target=wait_once) for _ in range(waiters)]
        for thread in threads:
            thread.start()
        wait_until(lambda: gate.waiting() == waiters)
        before = gate.reads
        time.sleep(0.5)
        during = gate.reads - before
        release.set()
        for thread in [holder, *threads]:
            thread.join(10)
        assert done.is_set() and gate.waiting() == 0
        return during

    one = readings_while_waiting(CountingGate(slots=1, folder=tmp_path / "one"), 1)
    many = readings_while_waiting(CountingGate(slots=1, folder=tmp_path / "many"), 30)
    assert one > 0 and many < 3 * one, (one, many)


def test_many_waiters_all_run_and_never_more_than_the_slots_at_once(tmp_path: Path) -> None:
    gate = DeviceGate(slots=2, folder=tmp_path)
    lock = threading.Lock()
    now = [0]
    most = [0]
    finished = []

    def run(i: int) -> None:
        with gate.hold(seconds=0.001 * (i % 7)):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.002)
            with lock:
                now[0] -= 1
                finished.append(i)

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(run, range(120)))
    assert sorted(finished) == list(range(120)) and most[0] <= 2 and gate.waiting() == 0
    assert not [n for n in os.listdir(tmp_path) if Ticket.parse(n)]


def _hold_in_child(folder: str, exclusive: bool, entered: str, release: str) -> None:
    gate = DeviceGate(slots=1, folder=folder)
    with gate.hold(exclusive=exclusive):
        Path(entered).touch()
        while not os.path.exists(release):
            time.sleep(0.005)


def _child(folder: Path, exclusive: bool) -> tuple[multiprocessing.process.BaseProcess, Path, Path]:
    entered, release = folder.parent / f"entered-{time.monotonic_ns()}", folder.parent / f"release-{time.monotonic_ns()}"
    proc = multiprocessing.get_context("spawn").Process(
        target=_hold_in_child, args=(str(folder), exclusive, str(entered), str(release))
    )
    proc.start()
    wait_until(entered.exists, 60)
    return proc, entered, release


def test_an_exclusive_run_in_another_process_keeps_this_one_waiting(tmp_path: Path) -> None:
    folder = tmp_path / "gate"
    gate = DeviceGate(slots=4, folder=folder)
    proc, _, release = _child(folder, exclusive=True)
    inside = threading.Event()

    def shared_run() -> None:
        with gate.hold():
            inside.set()

    waiter = threading.Thread(target=shared_run)
    waiter.start()
    wait_until(lambda: gate.waiting() == 1)
    assert not inside.is_set()
    release.touch()
    proc.join(30)
    wait_until(inside.is_set)
    waiter.join(10)


def test_a_crashed_process_does_not_block_the_gate(tmp_path: Path) -> None:
    folder = tmp_path / "gate"
    gate = DeviceGate(slots=1, folder=folder)
    proc, _, _ = _child(folder, exclusive=True)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    with gate.hold(exclusive=True):  # the dead owner's ticket is recognised and dropped
        pass
