"""``dioconf check pkg.module:factory``: the conformance suite over your filesystem.

`load_factory` imports the factory (the current directory is importable, so
``examples.goodfs:factory`` works from a project's root; a ``path/to/file.py:factory``
works too). `probe` builds the filesystem once on a small temporary device and says,
as a `FactoryError`, what keeps it from being checked: not importable, not callable,
raising while it builds, callbacks or suite operations missing, a block size the suite
cannot use. `run_check` then picks the engine (iomap with ``iomap_begin``, legacy with
``get_block``) and runs the conformance state machine (`conformance.run.run_combo`)
with every callback checked against its contract (`conformance.contract`), under a
``dioconf run`` profile or the Hypothesis settings given (the pytest plugin passes the
current profile's). A failure comes back shrunk, with its trace and a reproduction that
imports the factory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import define, field
from hypothesis import HealthCheck, settings

from ..impl.api import HOLE, Iomap
from .catalogue import PROFILES
from .contract import checked
from .paths import PathProblem, check_image_dir, check_out_dir
from .run import ComboResult, UsageError, make_settings, run_combo

BLOCK_SIZE = 4096  # the suite's geometries: 4 KiB pages, logical blocks of 512 or 4096
SUITE_OPERATIONS = ("create", "file", "extent_at", "truncate", "fallocate", "punch", "fsync",
                    "crash")  # fmt: skip
KIND_TITLES = {
    "contract": "contract violation",
    "stale": "stale data exposed",
    "lost": "acknowledged O_DSYNC/O_SYNC data lost after a crash",
    "contents": "the file holds data the model does not allow",
    "size": "i_size differs from the model's",
    "engine": "a result different from the model's",
    "crash": "an exception (from the filesystem, or the suite itself)",
}


class FactoryError(Exception):
    """The factory cannot be imported, built or used (``dioconf check`` exits 2)."""


# -- loading ----------------------------------------------------------------------------


def _import_module(module: str, spec: str) -> Any:
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = Path(module)
        if not path.is_file():
            raise FactoryError(f"{spec}: no file {module}")
        name = "_dioconf_factory_" + re.sub(r"\W", "_", path.stem)
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise FactoryError(f"{spec}: {module} cannot be imported as a Python module")
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[name] = mod
        mspec.loader.exec_module(mod)
        return mod
    return importlib.import_module(module)


def load_factory(spec: str) -> Callable[[Any], Any]:
    """The callable named by ``"pkg.module:attr"`` (or ``"path/to/file.py:attr"``);
    ``attr`` may be dotted (``module:MyFs.create``). The current directory is put on
    sys.path first. Raises `FactoryError` with what went wrong."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise FactoryError(f"{spec}: expected pkg.module:factory (a module path, a colon, "
                           "and the name of a callable that takes the device)")  # fmt: skip
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = _import_module(module, spec)
    except FactoryError:
        raise
    except ModuleNotFoundError as exc:
        ours = exc.name is not None and (module + ".").startswith(exc.name + ".")
        where = f" (looked in {cwd} and the installed packages)" if ours else ""
        raise FactoryError(f"{spec}: cannot import {module}: {exc}{where}") from exc
    except Exception as exc:
        raise FactoryError(f"{spec}: importing {module} raised {_where(exc)}") from exc
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(mod) if not n.startswith("_"))
            have = ", ".join(names[:12]) or "nothing public"
            raise FactoryError(f"{spec}: module {module} has no attribute {attr!r} (it has: "
                               f"{have})")  # fmt: skip
        obj = getattr(obj, part)
    if not callable(obj):
        raise FactoryError(f"{spec}: {attr} is a {type(obj).__name__}, not a callable "
                           "factory(device) -> filesystem")  # fmt: skip
    return obj  # type: ignore[no-any-return]


def _where(exc: BaseException) -> str:
    """``Type: message (file:line)`` of the innermost frame of ``exc``."""
    tb = [t for t in traceback.extract_tb(exc.__traceback__) if t.filename != __file__]
    at = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{at}"


def spec_of(factory: Any) -> str:
    """``"module:qualname"`` of a factory object (how a reproduction imports it)."""
    module = getattr(factory, "__module__", None) or "?"
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    return f"{module}:{name}"


def label_of(spec: str) -> str:
    """A name for reports and file names: ``examples.goodfs:factory`` ->
    ``examples.goodfs.factory``."""
    module, _, attr = spec.partition(":")
    if module.endswith(".py"):
        module = Path(module).stem
    return re.sub(r"[^\w.-]+", "-", f"{module}.{attr}").strip("-.") or "filesystem"


# -- probing ----------------------------------------------------------------------------


@define
class Probe:
    """What building the filesystem once showed."""

    name: str
    engine: str
    block_size: int
    callbacks: tuple[str, ...] = ()  # the optional callbacks it has


def probe(factory: Callable[[Any], Any], spec: str, engine: str | None = None) -> Probe:
    """Build the filesystem on a small temporary device and try the operations the
    suite needs once; `FactoryError` says what is wrong."""
    from ..impl.device import ImageDevice

    with tempfile.TemporaryDirectory(prefix="dioconf-probe-") as tmp:
        device = ImageDevice(Path(tmp) / "image", 64 << 20)
        try:
            return _probe(factory, spec, engine, device)
        finally:
            device.close()


def _probe(factory: Callable[[Any], Any], spec: str, engine: str | None, device: Any) -> Probe:
    try:
        fs = factory(device)
    except Exception as exc:
        raise FactoryError(f"{spec}: factory(device) raised {_where(exc)}") from exc
    if fs is None:
        raise FactoryError(f"{spec}: the factory returned None; it must return the filesystem")
    has = {n: callable(getattr(fs, n, None)) for n in ("iomap_begin", "get_block")}
    if engine is None:
        engine = "iomap" if has["iomap_begin"] else "legacy" if has["get_block"] else None
        if engine is None:
            raise FactoryError(f"{spec}: {type(fs).__name__} has neither iomap_begin (the "
                               "iomap engine) nor get_block (the legacy engine); see "
                               "dioconf.fsapi.IomapFilesystem")  # fmt: skip
    elif engine not in ("iomap", "legacy"):
        raise FactoryError(f"{spec}: unknown engine {engine!r} (iomap or legacy)")
    elif not has["iomap_begin" if engine == "iomap" else "get_block"]:
        need = "iomap_begin" if engine == "iomap" else "get_block"
        raise FactoryError(f"{spec}: the {engine} engine needs {need}, which "
                           f"{type(fs).__name__} does not have")  # fmt: skip
    bs = getattr(fs, "block_size", None)
    if bs != BLOCK_SIZE:
        raise FactoryError(f"{spec}: block_size is {bs!r}; the suite needs {BLOCK_SIZE} "
                           "(4 KiB pages, logical blocks up to 4 KiB)")  # fmt: skip
    need = SUITE_OPERATIONS + (("extend",) if engine == "legacy" else ())
    missing = [n for n in need if not callable(getattr(fs, n, None))]
    if missing:
        raise FactoryError(f"{spec}: {type(fs).__name__} lacks {', '.join(missing)}, which "
                           "the suite calls; subclass dioconf.fsapi.BlockFs to get them "
                           "(see dioconf.fsapi.SuiteOperations)")  # fmt: skip
    step = "create()"
    try:
        inode = fs.create()
        step = "file(inode).blocks"
        iter(fs.file(inode).blocks)
        step = "extent_at(inode, 0, block_size)"
        m = fs.extent_at(inode, 0, bs)
        if not isinstance(m, Iomap) or m.type != HOLE or not m.offset <= 0 < m.end:
            raise FactoryError(f"{spec}: extent_at(new file, 0, {bs}) returned {m!r}; a new "
                               "file is one hole (an Iomap of type HOLE covering 0)")  # fmt: skip
        step = "fsync(None)"
        if not isinstance(fs.fsync(None), int):
            raise FactoryError(f"{spec}: fsync must return 0 or a negative errno")
    except FactoryError:
        raise
    except Exception as exc:
        raise FactoryError(f"{spec}: {step} raised {_where(exc)}") from exc
    optional = ("iomap_end", "end_io", "submit_io", "dio_start", "write_failed")
    has_cb = tuple(n for n in optional if callable(getattr(fs, n, None)))
    return Probe(str(getattr(fs, "name", type(fs).__name__)), engine, bs, has_cb)


# -- running ----------------------------------------------------------------------------


@define
class CheckReport:
    """One filesystem checked: the run's result, and the shrunk story of a failure."""

    spec: str
    label: str
    engine: str
    profile: str | None
    seed: int | None
    result: ComboResult
    story: list[str] = field(factory=list)
    hints: list[str] = field(factory=list)  # likely causes, for a newcomer

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def title(self) -> str:
        f = self.result.failure
        return "" if f is None else KIND_TITLES.get(f.kind, f.kind)

    def describe(self) -> str:
        """The failure (or the pass) in a few lines: what, where, how to reproduce."""
        r = self.result
        head = f"{self.spec} on the {self.engine} engine"
        if r.failure is None:
            return f"{head}: pass ({r.examples} examples, {r.stats.steps} steps)"
        f = r.failure
        ops = f"{f.steps} operation{'s' if f.steps != 1 else ''}"
        lines = [f"{head}: FAIL, {self.title} after {ops} (shrunk)", f.message]
        if self.story:
            lines += ["operations (the last one failed):", *(f"  {s}" for s in self.story)]
        lines += [f"hint: {h}" for h in self.hints]
        if f.trace:
            clean = ": replays clean, the difference is at file level" if f.replays_clean else ""
            lines.append(f"trace: {f.trace}  (dioconf replay {f.trace}{clean})")
        if f.repro:
            lines.append(f"reproduction: python3 {f.repro}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        doc: dict[str, Any] = {
            "factory": self.spec, "label": self.label, "engine": self.engine,
            "profile": self.profile, "seed": self.seed, "ok": self.ok,
            "examples": r.examples, "seconds": round(r.seconds, 2),
            "steps": r.stats.steps, "requests": r.stats.requests, "bios": r.stats.bios,
            "crashes": r.stats.crashes, "races": r.stats.races,
            "order_checks": r.stats.order_checks, "quirks": r.stats.quirks,
        }  # fmt: skip
        if r.failure is not None:
            f = r.failure
            doc["failure"] = {"kind": f.kind, "title": self.title, "message": f.message,
                              "steps": f.steps, "operations": self.story, "trace": f.trace,
                              "repro": f.repro, "trace_replays_clean": f.replays_clean,
                              "hints": self.hints}  # fmt: skip
        return doc


def current_settings(examples: int | None = None) -> settings:
    """The loaded Hypothesis profile (``settings.default``) as the state machine needs
    it: its examples, steps, derandomize flag and example database kept; no deadline
    (a step does real I/O), no health check on slow data generation."""
    s = settings(settings.default, deadline=None, suppress_health_check=list(HealthCheck),
                 report_multiple_bugs=False)  # fmt: skip
    return s if examples is None else settings(s, max_examples=examples)


def resolve(factory: Callable[[Any], Any] | str) -> tuple[Callable[[Any], Any], str]:
    """(the factory, its ``pkg.module:attr`` path) from either."""
    if isinstance(factory, str):
        return load_factory(factory), factory
    if not callable(factory):
        raise FactoryError(f"{factory!r} is not a callable factory(device) -> filesystem")
    return factory, spec_of(factory)


def run_check(factory: Callable[[Any], Any] | str, *, profile: str | None = "ci",
              hypothesis_settings: settings | None = None, engine: str | None = None,
              examples: int | None = None, seed: int | None = None,
              out_dir: str | os.PathLike[str] = "dioconf-failures",
              image_dir: str | None = None,
              on_example: Callable[[], None] | None = None) -> CheckReport:  # fmt: skip
    """Check one filesystem. ``profile`` is a ``dioconf run`` profile; with
    ``profile=None``, ``hypothesis_settings`` (default: the loaded Hypothesis profile,
    `current_settings`) decide. Raises `FactoryError` for a factory that cannot be
    checked, `UsageError` for bad arguments."""
    fn, spec = resolve(factory)
    found = probe(fn, spec, engine)
    if profile is not None and profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if examples is not None and examples < 1:
        raise UsageError("examples must be at least 1")
    try:  # where it writes: checked before any work
        check_out_dir(out_dir)
        check_image_dir(image_dir)
    except PathProblem as exc:
        raise UsageError(str(exc)) from None
    if profile is not None and hypothesis_settings is None:
        s = make_settings(profile, examples)
    else:
        s = hypothesis_settings if hypothesis_settings is not None else current_settings()
        if examples is not None:
            s = settings(s, max_examples=examples)
    label = label_of(spec)
    module, _, attr = spec.partition(":")
    if module.endswith(".py"):  # the reproduction may run from another directory
        repro: tuple[str, str | None] = (f"{Path(module).resolve()}:{attr}", None)
    else:
        repro = (spec, os.getcwd())
    result = run_combo(label, found.engine, profile or "ci", seed=seed, out_dir=out_dir,
                       image_dir=image_dir, on_example=on_example, fs_factory=checked(fn),
                       hypothesis_settings=s, repro_factory=repro)  # fmt: skip
    f = result.failure
    story = f.story if f is not None else []
    return CheckReport(spec, label, found.engine, profile, seed, result, story,
                       _hints(found, f.kind, f.message) if f is not None else [])  # fmt: skip


def _hints(found: Probe, kind: str, message: str) -> list[str]:
    """Likely causes of a failure, from what the filesystem lacks."""
    out = []
    if found.engine == "iomap" and "end_io" not in found.callbacks and (
            kind == "size" or "i_size" in message):  # fmt: skip
        out.append(
            "the filesystem has no end_io: nothing moves i_size after a direct "
            "write (->end_io does it, after the data: xfs_dio_write_end_io)"
        )
    if kind == "crash":
        out.append("an exception was raised: the reproduction prints its traceback")
    return out
