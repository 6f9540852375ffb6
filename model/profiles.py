"""Profiles: where what a recording shows differs from the seed engine's outputs.

The engine models follow the seed code (../shared/seeds). A trace recorded from a real
kernel sees the engine through tracepoints below or around it, and a filesystem's glue
may decide things the engine leaves open. A profile says how, rule by rule, each with
its evidence in traces/kernel/DIVERGENCES.md. A trace picks its profile with the
header field ``profile``.
"""

from __future__ import annotations

from attrs import evolve, frozen

from .types import Bio, BioRun, Complete, Geometry, Output


@frozen
class Profile:
    name: str
    description: str
    # block layer (submit_bio_noacct, Linux 6.18): REQ_FUA and REQ_PREFLUSH are
    # cleared before trace_block_bio_queue when the device has no volatile write cache
    fua_stripped_without_cache: bool = False
    # filesystem glue the engine runs inside (``none``; ``btrfs``: btrfs_dio_iomap_end;
    # ``ext4``: ext4_dio_write_end_io's i_size update, host)
    glue: str = "none"
    # host, Linux 6.18 iomap_dio_bio_end_io: an async write's last bio completion never
    # completes it inline (IOMAP_DIO_INLINE_COMP is set for reads only, and
    # IOMAP_DIO_CALLER_COMP hands it to the submitter's task): it is queued to
    # s_dio_done_wq, where the seed's iomap_dio_done (L206-219) completes a pure
    # overwrite with no cached pages inline. Evidence: traces/kernel/DIVERGENCES.md 28.
    async_writes_complete_in_workqueue: bool = False

    def observe(self, o: Output, geo: Geometry, write: bool = False) -> Output:
        """The output as the recording's tracepoints would show it (``write``: the
        request writes)."""
        strip = self.fua_stripped_without_cache and not geo.write_cache
        if strip and isinstance(o, Bio | BioRun) and o.fua:
            return evolve(o, fua=False)
        punted = self.async_writes_complete_in_workqueue and write
        if punted and isinstance(o, Complete) and o.ctx == "inline":
            return evolve(o, ctx="workqueue")
        return o


SEED = Profile("seed", "the seed code as it is, observed at the engine itself")
LINUX_6_18 = Profile(
    "linux-6.18",
    "Linux 6.18 observed through tracefs: bios as block_bio_queue shows them",
    fua_stripped_without_cache=True,
    async_writes_complete_in_workqueue=True,
)
LINUX_6_18_BTRFS = Profile(
    "linux-6.18-btrfs",
    "Linux 6.18 btrfs through tracefs: as linux-6.18, inside btrfs's iomap glue",
    fua_stripped_without_cache=True,
    async_writes_complete_in_workqueue=True,
    glue="btrfs",
)
LINUX_6_18_EXT4 = Profile(
    "linux-6.18-ext4",
    "Linux 6.18 ext4 through tracefs: as linux-6.18, with ext4's ->end_io moving i_size "
    "to the start of an extending write that did nothing (DIVERGENCES.md 36)",
    fua_stripped_without_cache=True,
    async_writes_complete_in_workqueue=True,
    glue="ext4",
)
SEED_BTRFS = Profile("seed-btrfs", "the seed engine inside btrfs's glue", glue="btrfs")
PROFILES = {p.name: p for p in (SEED, SEED_BTRFS, LINUX_6_18, LINUX_6_18_BTRFS,
                                LINUX_6_18_EXT4)}  # fmt: skip


def get_profile(name: str | None) -> Profile:
    if name is None:
        return SEED
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
