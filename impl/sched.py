"""User buffers and bio completion: deterministic (a schedule decides) or threaded.

A bio's data moves when it *completes* (so a crash loses writes still in flight).
The deterministic scheduler gives its schedule a say at every race point the engine
passes: after each bio is submitted (``submitted``), before each ->iomap_begin
(``before_map``), before the submitter drops its own reference (``before_drop``), and
whenever the submitter has to wait (``wait``). The threaded scheduler completes bios on
worker threads with real concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from .api import Bio

Schedule = Callable[[str, list[Bio]], list[tuple[Bio, int]]]


class Device(Protocol):
    def write(self, addr: int, data: memoryview, *, fua: bool = False) -> None: ...

    def readinto(self, addr: int, buf: memoryview) -> None: ...


class UserBuffer:
    """The user's memory for one request: page-aligned, and unpinnable from ``fault_at``
    on (a non-resident page under a no-fault iterator)."""

    __slots__ = ("data", "fault_at", "page_size", "view")

    def __init__(self, data: bytearray, page_size: int = 4096) -> None:
        self.data = data
        self.view = memoryview(data)
        self.page_size = page_size
        self.fault_at: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    def fault(self, at: int) -> None:
        if at % self.page_size:
            raise ValueError(f"a fault position must be a multiple of {self.page_size}, got {at}")
        self.fault_at = at if self.fault_at is None else min(self.fault_at, at)

    def pinnable(self, start: int, want: int) -> int:
        """How many of ``want`` bytes from ``start`` can be pinned or copied."""
        if self.fault_at is None:
            return want
        return max(0, min(want, self.fault_at - start))


def in_order(_where: str, inflight: list[Bio]) -> list[tuple[Bio, int]]:
    """The default schedule: nothing completes until the submitter waits; then the
    oldest bio completes, with status 0."""
    return [(inflight[0], 0)] if _where == "wait" and inflight else []


class Deterministic:
    """Completes bios only when the schedule says so."""

    threaded = False

    def __init__(self, device: Device, schedule: Schedule = in_order) -> None:
        self.device = device
        self.schedule = schedule
        self.inflight: list[Bio] = []
        self.on_end: Callable[[Bio], None] | None = None  # e.g. a trace recorder

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @schedule.setter
    def schedule(self, schedule: Schedule) -> None:
        self._schedule = schedule
        # whether `point` can do anything: in_order only acts when the submitter waits
        self.points = schedule is not in_order

    def submit(self, bio: Bio) -> None:
        self.inflight.append(bio)
        if self.points:
            self.point("submitted")

    def point(self, where: str) -> None:
        """A race point of the engine: the schedule may complete bios here."""
        for bio, status in self.schedule(where, list(self.inflight)):
            self.complete(bio, status)

    def wait(self, done: Callable[[], bool]) -> None:
        while not done():
            if not self.inflight:
                raise RuntimeError("the submitter waits but no bio is in flight")
            if self.schedule is in_order:
                self.complete(self.inflight[0], 0)
                continue
            picks = self.schedule("wait", list(self.inflight)) or [(self.inflight[0], 0)]
            for bio, status in picks:
                self.complete(bio, status)

    def complete(self, bio: Bio, status: int = 0) -> None:
        if bio not in self.inflight:
            raise ValueError(f"bio {bio.index} is not in flight")
        self.inflight.remove(bio)
        bio.status = status
        if not status:  # _transfer, inline: a failed bio transfers nothing
            if bio.op == "write":
                self.device.write(bio.addr, bio.data, fua=bio.fua)
            else:
                self.device.readinto(bio.addr, bio.data)
        if self.on_end is not None:
            self.on_end(bio)
        assert bio.end_io is not None
        bio.end_io(bio)

    def drain(self) -> None:
        while self.inflight:
            self.complete(self.inflight[0], 0)

    def notify(self) -> None:
        pass


class Threaded:
    """Completes every bio on a worker thread as soon as the device has done it."""

    threaded = True
    points = False  # no race points: completions race for real

    def __init__(self, device: Device, workers: int = 4) -> None:
        self.device = device
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dioconf-bio")
        self.cond = threading.Condition()
        self.on_end: Callable[[Bio], None] | None = None
        self.errors: list[BaseException] = []

    def submit(self, bio: Bio) -> None:
        self.pool.submit(self._run, bio)

    def _run(self, bio: Bio) -> None:
        try:
            _transfer(self.device, bio, 0)
            if self.on_end is not None:
                self.on_end(bio)
            assert bio.end_io is not None
            bio.end_io(bio)
        except BaseException as exc:  # surfaced by drain()
            self.errors.append(exc)
            self.notify()

    def point(self, where: str) -> None:
        pass

    def wait(self, done: Callable[[], bool]) -> None:
        with self.cond:
            while not done():
                if self.errors:
                    raise self.errors[0]
                self.cond.wait(timeout=5)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def drain(self) -> None:
        self.pool.shutdown(wait=True)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dioconf-bio")
        if self.errors:
            raise self.errors[0]


def _transfer(device: Device, bio: Bio, status: int) -> None:
    """The device does the bio's work, unless it fails."""
    bio.status = status
    if status:
        return  # a failed bio transfers nothing
    if bio.op == "write":
        device.write(bio.addr, bio.data, fua=bio.fua)
    else:
        device.readinto(bio.addr, bio.data)
