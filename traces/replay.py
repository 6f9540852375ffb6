"""Replay a v1 trace through the engine model and report the first divergence.

The interleaving rules are those of ../shared/trace-format.md: inputs are consumed when
the engine asks for them (``invalidate``/``writeback`` default to 0 when absent), a
``bio_end`` or ``fault`` takes effect exactly at its position, and bios without a
``bio_end`` complete with status 0, in submission order, when the replay reaches their
request's ``complete`` line (or the end of the file). Outputs are compared in order, per
request; kinds missing from the header's ``observed`` list (or a begin's own ``observed``
list, which narrows it) are not compared.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import attrs

from ..model.engine import Engine
from ..model.engines import get_engine
from ..model.profiles import get_profile
from ..model.syscall_glue import syscall_result
from ..model.types import (
    Action,
    Bio,
    BioEnd,
    BioEndAll,
    BioRun,
    Blocked,
    Complete,
    Cut,
    DefaultCuts,
    Emit,
    Fault,
    InodeSize,
    InvalidateResult,
    ModelUsageError,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    WritebackResult,
)
from .field_rules import field_rule
from .format import (
    Event,
    Header,
    Trace,
    begin_to_request,
    event_to_input,
    make_event,
    parse_header,
    scan_trace,
)
from .report import (  # noqa: F401 - re-exported: the replay's results
    Divergence,
    FileResult,
    _Diverged,
    _mismatch,
    _rule_of,
    describe_action,
    describe_event,
    describe_output,
    mismatch_field,
    output_kind,
)

# engines that take DefaultCuts and BioEndAll (bios implied in bulk)
BULK_ENGINES = frozenset({"iomap"})
# engines whose requests read a shared inode size (InodeSize)
SHARED_INODE_ENGINES = frozenset({"iomap"})
OUTCOMES_KEPT = 1 << 16  # requests whose results a later "syscall" line may need


class _Request:
    """Replay bookkeeping of one request."""

    __slots__ = ("finished", "nbios", "observed", "req", "state", "write")

    def __init__(self, req: int, state: Any, observed: frozenset[str], write: bool) -> None:
        self.req = req
        self.state = state
        self.write = write
        self.observed = observed  # output kinds recorded for this request
        self.nbios = 0  # bios the model has emitted
        self.finished = False


class Replayer:
    """Feeds one trace to the model, line by line."""

    def __init__(self, trace: Trace, engine: Engine | None = None) -> None:
        self.trace = trace
        self.engine = engine or get_engine(trace.header.engine)
        self.geometry = trace.header.geometry
        self.observed = trace.header.observed
        self.profile = get_profile(trace.header.raw.get("profile"))
        self.i_size = 0
        # a trace is one file: its requests share the inode (see _share_i_size)
        self.shared_inode = self.engine.name in SHARED_INODE_ENGINES
        self.requests: dict[int, _Request] = {}  # requests still in flight
        self.seen = 0  # requests begun
        # req -> [op, NOWAIT, the model's ret once complete, pos] of recent requests, for
        # the "syscall" lines that follow them (bounded: memory stays flat)
        self.outcomes: OrderedDict[int, list[Any]] = OrderedDict()

    # -- driving ---------------------------------------------------------------------

    def run(self, events: Iterable[Event] | None = None) -> FileResult:
        """Replay the trace's events, or ``events`` as they come (a streamed file: its
        remaining lines are still read after a divergence, so that a malformed file is
        reported as such, never half replayed)."""
        stream = iter(self.trace.events if events is None else events)
        last, count = 1, 0
        try:
            for e in stream:
                last, count = e.line, count + 1
                self._event(e)
            for r in list(self.requests.values()):
                try:
                    self._finish_at_eof(r, last)
                except ModelUsageError as exc:
                    raise _Diverged(
                        last, r.req, "(end of trace)", str(exc), "model contract"
                    ) from exc
        except _Diverged as d:
            count += sum(1 for _ in stream)  # (validates the rest)
            div = d.divergence(self.trace.path)
            return FileResult(self.trace.path, div, self.seen, count)
        return FileResult(self.trace.path, None, self.seen, count)

    def _event(self, e: Event) -> None:
        ev = e.ev
        if ev == "file":
            self._share_i_size(e.fields["i_size"])
            return
        if ev == "begin":
            try:
                state = self.engine.start(
                    self.geometry, begin_to_request(e), self.i_size, self.profile.glue
                )
            except (ModelUsageError, ValueError) as exc:
                raise _Diverged(e.line, e.req, describe_event(e), str(exc), "engine entry") from exc
            observed = frozenset(e.fields.get("observed", self.observed))
            self.requests[e.req] = _Request(e.req, state, observed, e.fields["op"] == "write")
            self.seen += 1
            # op, NOWAIT, result, pos, the buffer offset of its first fault (or None)
            self.outcomes[e.req] = [e.fields["op"], "NOWAIT" in e.fields["iocb"], None,
                                    e.fields["pos"], None]  # fmt: skip
            if len(self.outcomes) > OUTCOMES_KEPT:
                self.outcomes.popitem(last=False)
            return
        if ev == "syscall":
            self._syscall(e)
            return
        r = self.requests.get(e.req)
        if r is None:  # the model finished it (its complete is not among the observed)
            raise _Diverged(e.line, e.req, describe_event(e), "request already complete", "")
        try:
            if ev == "fault":
                r.state = self.engine.feed(r.state, Fault(e.fields["at"]))
                out = self.outcomes.get(e.req)
                if out is not None and out[4] is None:
                    out[4] = e.fields["at"]
            elif ev == "bio_end":
                self._bio_end(r, e)
            elif ev in ("map", "invalidate", "writeback"):
                self._input(r, e)
            else:
                self._output(r, e)
        except ModelUsageError as exc:
            raise _Diverged(e.line, e.req, describe_event(e), str(exc), "model contract") from exc

    def _step(self, r: _Request) -> Action:
        r.state, action = self.engine.step(r.state)
        if isinstance(action, Emit):
            o = action.output
            if isinstance(o, Bio):
                r.nbios += 1
            elif isinstance(o, BioRun):
                r.nbios += o.count
            elif isinstance(o, Complete):
                self._completed_size(r, o.i_size)
                if r.req in self.outcomes:
                    self.outcomes[r.req][2] = o.ret
                r.finished = True
                # nothing of a finished request is kept: memory stays flat
                del self.requests[r.req]
        return action

    def _completed_size(self, r: _Request, size: int) -> None:
        if not self.shared_inode:
            self.i_size = size
        elif "BUF_WRITETHROUGH" not in r.state.req.dio:
            # a completion only moves i_size on (truncation waits for direct I/O); an
            # RWF_WRITETHROUGH dio's does not move it at all: its buffered write did
            self._share_i_size(max(self.i_size, size))

    def _share_i_size(self, size: int) -> None:
        """The inode's size changed (a ``file`` line, a request's completion): every
        request in flight reads the shared inode (iomap; the legacy model samples it)."""
        changed = size != self.i_size
        self.i_size = size
        if changed and self.shared_inode:
            for r in list(self.requests.values()):
                # (not RWF_WRITETHROUGH's dios: their buffered write owns i_size, and the
                # implementation's writethrough reports sizes that go back down: to see)
                if not r.finished and "BUF_WRITETHROUGH" not in r.state.req.dio:
                    r.state = self.engine.feed(r.state, InodeSize(size))

    def _racing_size(self, o: Complete, e: Event) -> Complete:
        """iomap_dio_complete's tracepoint reads the shared inode's size when it runs,
        which for a deferred completion (a workqueue) is later than the model computed
        it, and which may already include another request's extension: an extending
        write's ->end_io moves i_size (xfs_dio_write_end_io, ext4_dio_write_end_io)
        before its own tracepoint; btrfs moves it when it maps a write
        (btrfs_get_blocks_direct_write: i_size_write(start + len)). A recorded size that
        is the shared size now, or the end of a write in flight, past the model's, is
        that; it becomes the shared size."""
        seen = e.fields.get("i_size")
        if not self.shared_inode or seen is None or seen <= o.i_size:
            return o
        ends = set()
        for st in (q.state for q in self.requests.values()):
            if st.req.op != "write":  # (shared_inode: iomap states)
                continue
            ends.add(st.req.pos + st.size)
            if self.profile.glue == "btrfs":  # i_size_write inside ->iomap_begin, which
                # may run before the mapping's own tracepoint: the mapped end, or the
                # request's end while its mapping is not traced yet
                end, m = st.req.pos + st.req.len, st.mapping
                ends.add(min(m.offset + m.length, end) if m is not None else end)
        if seen != self.i_size and seen not in ends:
            return o
        self._share_i_size(seen)
        return attrs.evolve(o, i_size=seen)

    def _default_input(self, r: _Request, action: Action) -> bool:
        """Answer an invalidation or writeback question with 0 (absent means 0)."""
        if isinstance(action, NeedInvalidate):
            r.state = self.engine.feed(r.state, InvalidateResult(0))
        elif isinstance(action, NeedWriteback):
            r.state = self.engine.feed(r.state, WritebackResult(0))
        else:
            return False
        return True

    def _diverge(self, e: Event, action: Action, name: str = "") -> _Diverged:
        """The divergence at ``e``; ``name``: the output field that differs, whose own
        deciding rule is named (traces/field_rules.py), with the output's derivation."""
        rule = _rule_of(action)
        kind = output_kind(action.output) if isinstance(action, Emit) else ""
        decides = field_rule(self.engine.name, e.ev if name == "kind" else kind, name)
        if decides is None or name == "ret":
            return _Diverged(e.line, e.req, describe_event(e), describe_action(action), rule,
                             name)  # fmt: skip
        return _Diverged(e.line, e.req, describe_event(e), describe_action(action),
                         decides.describe(), name, rule)  # fmt: skip

    def _bio_end(self, r: _Request, e: Event) -> None:
        index = e.fields["index"]
        # bios that are not recorded: let the model issue them first
        while r.nbios <= index and "bio" not in r.observed:
            action = self._step(r)
            if self._default_input(r, action):
                continue
            if isinstance(action, NeedCut):
                r.state = self.engine.feed(r.state, self._implied_cuts(action, index + 1 - r.nbios))
            elif isinstance(action, Emit):
                if output_kind(action.output) in r.observed:
                    raise self._diverge(e, action)
            else:
                raise self._diverge(e, action)
        # iomap: a submitter that has nothing left to show before it waits for its bios
        # (a synchronous request at the end of its submission) has got there: work no
        # line shows, such as setting its own error (__iomap_dio_rw after the loop), comes
        # before a completion it waits for. (The legacy engine reaps completions inside
        # its wait, dio_await_completion, so there a completion takes effect at once.)
        if self.engine.name == "iomap":
            state, action = self.engine.step(r.state)
            if isinstance(action, Blocked):
                r.state = state
        r.state = self.engine.feed(r.state, BioEnd(index, e.fields["status"]))

    def _input(self, r: _Request, e: Event) -> None:
        while True:
            action = self._step(r)
            if isinstance(action, NeedInvalidate):
                ret = e.fields["ret"] if e.ev == "invalidate" else 0  # absent means 0
                r.state = self.engine.feed(r.state, InvalidateResult(ret))
                if e.ev == "invalidate":
                    return
            elif isinstance(action, NeedWriteback):
                ret = e.fields["ret"] if e.ev == "writeback" else 0
                r.state = self.engine.feed(r.state, WritebackResult(ret))
                if e.ev == "writeback":
                    return
            elif isinstance(action, NeedMap) and e.ev == "map":
                create = e.fields.get("create")
                if create is not None and action.create is not None and create != action.create:
                    raise self._diverge(e, action)
                r.state = self.engine.feed(r.state, event_to_input(e))
                return
            elif isinstance(action, NeedCut) and "bio" not in r.observed:
                r.state = self.engine.feed(r.state, self._implied_cuts(action))
            elif isinstance(action, Emit) and output_kind(action.output) not in r.observed:
                continue
            else:
                raise self._diverge(e, action)

    def _output(self, r: _Request, e: Event) -> None:
        while True:
            action = self._step(r)
            if self._default_input(r, action):
                continue
            if isinstance(action, NeedCut):
                if "bio" in r.observed or e.ev == "bio":
                    r.state = self.engine.feed(r.state, Cut(self._cut(r, action, e)))
                else:
                    r.state = self.engine.feed(r.state, self._implied_cuts(action))
            elif isinstance(action, Emit):
                o = self.profile.observe(action.output, self.geometry, r.write)
                if output_kind(o) not in r.observed:
                    continue
                if isinstance(o, Complete) and e.ev == "complete":
                    o = self._racing_size(o, e)
                if output_kind(o) != e.ev:
                    raise self._diverge(e, Emit(o), "kind")
                name = mismatch_field(o, e)
                if name is not None:
                    raise self._diverge(e, Emit(o), name)
                return
            elif isinstance(action, Blocked) and e.ev in ("flush", "complete"):
                # bios with no bio_end line complete now, in submission order, status 0
                r.state = self.engine.feed(r.state, self._implied_ends(action))
            else:
                raise self._diverge(e, action)

    def _implied_cuts(self, need: NeedCut, limit: int | None = None) -> Cut | DefaultCuts:
        """Bios that are not recorded take the engine's own cut; the iomap model submits
        a run of them at once (``DefaultCuts``, the same as one ``Cut`` per bio)."""
        if self.engine.name in BULK_ENGINES:
            return DefaultCuts(limit)
        return Cut(need.proposal.len)

    def _implied_ends(self, blocked: Blocked) -> BioEnd | BioEndAll:
        """Bios with no ``bio_end`` line complete with status 0, oldest first: all at
        once on iomap (``BioEndAll``, the same as one ``BioEnd`` each while it waits)."""
        if self.engine.name in BULK_ENGINES:
            return BioEndAll(0)
        # the legacy submitter reaps each completion inside its wait (dio_await_one)
        return BioEnd(blocked.outstanding.first, 0)

    def _cut(self, r: _Request, need: NeedCut, e: Event) -> int:
        """How many bytes the next data bio carries: the recorded cut when it is one
        the engine could have made, else the model's own (then compared and reported)."""
        p = self.profile.observe(need.proposal, self.geometry)
        if e.ev != "bio":
            if "bio" in r.observed:
                raise self._diverge(e, need)
            return p.len
        f = e.fields
        n = f["len"]
        fits = (
            0 < n <= need.max_len and n % need.align == 0 and (not need.exact or n == need.max_len)
        )
        if fits and (f["op"], f["addr"], f["fua"]) == (p.op, p.addr, p.fua):
            return n
        return p.len

    def _syscall(self, e: Event) -> None:
        """The system call that made requests ``reqs`` returned ``ret``: they are over
        (one that returned early is finished here), and the filesystem's glue turns
        their results into the call's (model/syscall_glue.py)."""
        says = describe_event(e)
        reqs = e.fields["reqs"]
        try:
            for req in reqs:
                r = self.requests.get(req)
                if r is not None:
                    self._finish_at_eof(r, e.line, "(the system call returned)")
            if any(q not in self.outcomes for q in reqs):
                raise ModelUsageError(f"requests {reqs} began too long before this line")
            op, nowait, _, _, _ = self.outcomes[reqs[-1]]
            results = [self.outcomes[q][2] for q in reqs]
            pos = self.outcomes[reqs[0]][3]
            # the first fault, as an offset in the system call's buffer (a retry's
            # request starts where the call's had got to)
            faults = [self.outcomes[q][3] - pos + self.outcomes[q][4] for q in reqs
                      if self.outcomes[q][4] is not None]  # fmt: skip
            pred = syscall_result(self.trace.header.fs or "", op, e.fields["len"], nowait,
                                  results, pos, self.i_size,
                                  min(faults) if faults else None)  # fmt: skip
        except (ModelUsageError, ValueError) as exc:
            raise _Diverged(e.line, e.req, says, str(exc), "model contract") from exc
        if pred.ret is not None and pred.ret != e.fields["ret"]:
            raise _Diverged(e.line, e.req, says, f"syscall ret={pred.ret}", pred.rule, "ret")

    def _finish_at_eof(self, r: _Request, line: int, says: str = "(end of trace)") -> None:
        while not r.finished:
            action = self._step(r)
            if self._default_input(r, action):
                continue
            if isinstance(action, NeedCut) and "bio" not in r.observed:
                r.state = self.engine.feed(r.state, self._implied_cuts(action))
            elif isinstance(action, Blocked):
                r.state = self.engine.feed(r.state, self._implied_ends(action))
            elif isinstance(action, Emit) and output_kind(action.output) not in r.observed:
                continue
            else:
                raise _Diverged(line, r.req, says, describe_action(action), _rule_of(action))


def replay_trace(trace: Trace) -> FileResult:
    return Replayer(trace).run()


def replay_file(path: str) -> FileResult:
    """Read, validate and replay one file as it is read: memory does not grow with its
    length (raises TraceFormatError when malformed, wherever that shows)."""
    items = scan_trace(path)
    header = next(items)
    assert isinstance(header, Header)
    trace = Trace(str(path), header, ())
    return Replayer(trace).run(e for e in items if isinstance(e, Event))


class StreamReplayer(Replayer):
    """A replay fed one event at a time, as a recorder produces them (the conformance
    suite checks each request as soon as it has run). Line numbers are those of the
    trace file the same events make (header on line 1). A stream may interleave the
    requests of several files (the conformance harness does): no inode is shared unless
    ``shared_inode`` says the stream is one file's."""

    def __init__(
        self, header: dict[str, Any], path: str = "<stream>", *, shared_inode: bool = False
    ) -> None:
        h = parse_header(header, path)
        super().__init__(Trace(path, h, ()))
        self.path = path
        self.shared_inode = shared_inode and self.shared_inode

    def feed(self, line: int, obj: dict[str, Any]) -> Divergence | None:
        """Check one event (a trace line as a dict); the first divergence, or None."""
        e = make_event(self.path, line, obj, self.trace.header)
        try:
            self._event(e)
        except _Diverged as d:
            return d.divergence(self.path)
        return None

    def state_of(self, req: int) -> Any:
        """The model's state of request ``req`` while it is in flight (None after)."""
        r = self.requests.get(req)
        return None if r is None else r.state

    def set_cached_pages(self, req: int, cached: bool) -> None:
        """Whether the file of request ``req``, in flight, has cached pages now: what
        iomap_dio_done (dio_complete) will read when it completes (``begin.cached_pages``
        is that value; a stream learns it as the page cache changes under the request)."""
        r = self.requests.get(req)
        if r is None:
            return
        st = r.state
        if hasattr(st, "req") and hasattr(st.req, "cached_pages"):
            r.state = attrs.evolve(st, req=attrs.evolve(st.req, cached_pages=cached))
        elif hasattr(st, "cfg") and hasattr(st.cfg, "cached_pages"):
            r.state = attrs.evolve(st, cfg=attrs.evolve(st.cfg, cached_pages=cached))

    def abandon(self) -> list[int]:
        """A crash: the requests in flight never complete; forget them."""
        gone = list(self.requests)
        self.requests.clear()
        return gone

    def finish(self, line: int) -> Divergence | None:
        """The end of the stream: requests still open are completed as at end of file."""
        try:
            for r in list(self.requests.values()):
                self._finish_at_eof(r, line)
        except _Diverged as d:
            return d.divergence(self.path)
        return None
