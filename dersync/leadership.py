"""Which process may send to AEMO: exactly one, always, through a lease that lapses unless renewed.

Every process that sends (the daemon's replicas, a hand-run `dersync sync`) holds the sender
lease first: one row in the store (`dersync.store.lease`) with a holder, a `generation` bumped by
every claim and a `renewal` counter bumped by every renewal. Nothing in it is a wall-clock time:
each process judges time by its own boot clock (`boot_clock`: monotonic, and still counting while
the process is stopped or the machine is suspended), and only the *rates* of two machines' clocks
need agree, which they do to parts per million.

With `F` = `failover_seconds`, `LeaseTiming.for_failover` derives:

* the holder renews every `R = F/9`, each attempt given `R` to answer;
* a renewal sent at `t` (holder's clock) lets the holder send until `t + L`, `L = F/3`; after that
  it sends nothing (`check`, called before every request), whatever state it was in meanwhile
  (hung, stopped by SIGSTOP, cut off from the store), until a renewal succeeds again;
* a standby reads the row every `P = F/15` and claims it only when it has seen the same
  `(generation, renewal)` for `L + M` (`M = F/15`) by its own clock, or at once when the lease was
  released at a clean stop. The claim is a compare-and-swap on that pair, so a renewal that
  landed meanwhile makes it fail. `L + M` is the *holder's* (the row carries it as
  `lapse_seconds`), so processes with different settings (a daemon, a hand-run `dersync sync`)
  still judge each other's leases by the rule the holder keeps.

Why two senders cannot overlap: the standby first saw the pair after the holder's last renewal
committed, which was after the holder sent it at `t`; so the claim comes at least `L + M` after
`t`, at least `M` after the holder stopped sending by its own rule. Why failover is bounded: the
standby sees the last renewal within `P` of it and claims within `L + M + P` of seeing it, so
within `L + M + 2P = 8F/15` of the last renewal, inside `F` however the holder failed.

A deposed holder's in-flight answers are still recorded only if no one took over: store writes
carry the generation (`Fence`) and the store refuses a stale one; the records then stay due with
their attempt noted, and the new holder reads AEMO before writing them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from dersync.errors import LeaseLost, SenderElsewhere, StoreUnavailable
from dersync.store import Claim, Fence, LeaseRow, Store

log = structlog.get_logger("dersync.leader")

Role = Literal["starting", "leader", "standby"]


def boot_clock() -> float:
    """Seconds on a clock that never goes back and keeps counting while the process is stopped
    or the machine suspended (Linux CLOCK_BOOTTIME; plain monotonic elsewhere)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


@dataclass(frozen=True)
class LeaseTiming:
    """The lease's periods, all derived from the failover setting (see the module docstring)."""

    renew_every: float
    lease: float
    margin: float
    poll: float

    @classmethod
    def for_failover(cls, failover_seconds: float) -> LeaseTiming:
        return cls(renew_every=failover_seconds / 9, lease=failover_seconds / 3,
                   margin=failover_seconds / 15, poll=failover_seconds / 15)

    @property
    def lapse_after_silence(self) -> float:
        """How long a standby must see the lease unchanged before it may claim it."""
        return self.lease + self.margin

    @property
    def worst_takeover(self) -> float:
        """The longest a standby can take to claim after the holder's last renewal."""
        return self.lease + self.margin + 2 * self.poll


def new_replica_id() -> str:
    """Host, process and a random suffix: unique per process, readable in logs and /readyz."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Leadership:
    """This process's side of the sender lease: claim, renew, lapse, release."""

    def __init__(self, store: Store, timing: LeaseTiming, *, clock: Callable[[], float] = boot_clock,
                 replica_id: str | None = None) -> None:
        self.store = store
        self.timing = timing
        self.replica_id = replica_id or new_replica_id()
        self._clock = clock
        #: The generation this process holds (or held until it learns otherwise), else None.
        self.generation: int | None = None
        self._valid_until = 0.0
        self._leading = False  # announced as leader; cleared (with leader.lost) when it stops being
        self._started = False
        self._seen: tuple[int, int] | None = None
        self._seen_at = 0.0
        self._task: asyncio.Task[None] | None = None
        #: Called when this process becomes the holder after start (a standby taking over).
        self.on_acquired: Callable[[], object] | None = None
        #: Called when it stops being the holder: work under way must stop sending.
        self.on_lost: Callable[[], object] | None = None

    # --- what other parts ask ------------------------------------------------------------------

    def may_send(self) -> bool:
        return self.generation is not None and self._clock() < self._valid_until

    def check(self) -> None:
        """The transport's guard before every request: raise `LeaseLost` unless the lease is valid."""
        if not self.may_send():
            raise LeaseLost(f"replica {self.replica_id} does not hold a valid sender lease; nothing more is sent")

    @property
    def fence(self) -> Fence | None:
        """What store writes carry, so the store can refuse them once another process took over."""
        return Fence(self.replica_id, self.generation) if self.generation is not None else None

    @property
    def role(self) -> Role:
        if not self._started:
            return "starting"
        return "leader" if self.may_send() else "standby"

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """The daemon's way: one look (claiming a free lease at once), then keep at it in the
        background (`background=False` leaves the ticking to the caller: tests)."""
        row = await self._observe()
        self._started = True
        if not self.may_send():
            log.info("leader.standby", replica=self.replica_id, holder=row.holder if row else None,
                     lapse_after_seconds=round(max(row.lapse_seconds if row else 0.0,
                                                   self.timing.lapse_after_silence), 2))
        if background:
            self._task = asyncio.create_task(self._run(), name="dersync-sender-lease")

    async def acquire(self) -> None:
        """A one-shot command's way: become the holder, or raise `SenderElsewhere` if a live
        process holds the lease (its renewals are seen going on)."""
        first: tuple[int, int] | None = None
        while True:
            row = await self._observe()
            if self.may_send():
                break
            if row is not None and row.holder not in (None, self.replica_id):
                if first is None:
                    first = row.version
                    log.info("leader.waiting", replica=self.replica_id, holder=row.holder,
                             lapse_after_seconds=round(max(row.lapse_seconds, self.timing.lapse_after_silence), 2))
                elif row.version != first:
                    raise SenderElsewhere(
                        f"another dersync process ({row.holder}) is sending to AEMO and renewing its lease; "
                        "only one may send at a time: leave the work to it, or stop it first")
            await asyncio.sleep(self.timing.poll)
        self._started = True
        self._task = asyncio.create_task(self._run(), name="dersync-sender-lease")

    async def stop(self) -> None:
        """Stop renewing and hand the lease back, so a standby can claim it at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        fence = self.fence
        self._valid_until = 0.0
        self.generation = None
        self._leading = False
        if fence is None:
            return
        try:
            released = await asyncio.wait_for(self.store.release_lease(fence), self.timing.lease)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("leader.release_failed", replica=self.replica_id, error=str(exc) or type(exc).__name__,
                        lapse_after_seconds=round(self.timing.lapse_after_silence, 2))
            return
        if released:
            log.info("leader.released", replica=self.replica_id, generation=fence.generation)

    # --- the loop ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """One step of the background loop: renew what is held, else look (and maybe claim)."""
        if self.generation is not None:
            await self._renew()
        else:
            await self._observe()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.timing.renew_every if self.generation is not None else self.timing.poll)
            try:
                await self.tick()
            except Exception as exc:
                # Whatever went wrong, the lease still lapses by the clock if renewals stop.
                log.warning("leader.check_failed", replica=self.replica_id, error=str(exc) or type(exc).__name__,
                            error_type=type(exc).__name__)

    async def _renew(self) -> None:
        assert self.generation is not None
        fence = Fence(self.replica_id, self.generation)
        sent = self._clock()
        try:
            renewed = await asyncio.wait_for(self.store.renew_lease(fence), self.timing.renew_every)
        except (StoreUnavailable, TimeoutError) as exc:
            reason = str(exc) or "the store did not answer in time"
            log.warning("leader.check_failed", replica=self.replica_id, error=reason)
            if self._leading and not self.may_send():
                self._lapse(f"lease not renewed for {self._clock() - (self._valid_until - self.timing.lease):.1f} s "
                            f"({reason})")
            return
        if not renewed:
            last = self._valid_until - self.timing.lease
            self._lose(f"another replica claimed the sender lease (last renewal {sent - last:.1f} s ago)")
            return
        if self._leading and sent >= self._valid_until:
            # Nobody claimed it, but for a while this process could not prove its lease (it was
            # paused, or the store slow): work under way stopped, and resumes once announced.
            self._lapse(f"lease ran out {sent - self._valid_until:.1f} s before it could be renewed")
        self._valid_until = sent + self.timing.lease
        if not self._leading:
            self._became_leader(waited=0.0, renewed=True)

    async def _observe(self) -> LeaseRow | None:
        """Read the lease; claim it if free, ours, or unchanged for long enough."""
        try:
            row = await asyncio.wait_for(self.store.read_lease(), max(self.timing.poll, 0.5))
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("leader.check_failed", replica=self.replica_id, error=str(exc) or "the store did not answer")
            return None
        now = self._clock()
        if row is not None and row.holder == self.replica_id:
            # A claim of ours that timed out on the way back did land: renew to learn it is valid.
            self.generation = row.generation
            await self._renew()
            return row
        if row is None or row.holder is None:
            await self._claim(row.version if row is not None else None, waited=0.0)
            return row
        if row.version != self._seen:
            self._seen, self._seen_at = row.version, now
            return row
        if now - self._seen_at >= max(row.lapse_seconds, self.timing.lapse_after_silence):
            await self._claim(row.version, waited=now - self._seen_at)
        return row

    async def _claim(self, seen: tuple[int, int] | None, *, waited: float) -> None:
        sent = self._clock()
        try:
            claim = Claim(self.replica_id, seen, self.timing.lapse_after_silence)
            generation = await asyncio.wait_for(self.store.claim_lease(claim), max(self.timing.poll, 0.5))
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("leader.check_failed", replica=self.replica_id, error=str(exc) or "the store did not answer")
            return
        if generation is None:
            return  # someone else was quicker, or the holder renewed after all
        self.generation = generation
        self._valid_until = sent + self.timing.lease
        self._became_leader(waited=waited, renewed=False)

    # --- transitions ---------------------------------------------------------------------------

    def _became_leader(self, *, waited: float, renewed: bool) -> None:
        self._leading = True
        self._seen = None
        log.info("leader.acquired", replica=self.replica_id, generation=self.generation, mechanism="sender lease",
                 waited_seconds=round(waited, 2), renewed_after_lapse=renewed)
        if self._started and self.on_acquired is not None:
            try:
                self.on_acquired()
            except Exception as exc:
                log.warning("leader.on_acquired_failed", replica=self.replica_id, error=str(exc))

    def _lapse(self, reason: str) -> None:
        """The lease ran out without a renewal: stop sending, keep trying to renew our generation."""
        self._leading = False
        log.warning("leader.lost", replica=self.replica_id, generation=self.generation, reason=reason)
        if self.on_lost is not None:
            self.on_lost()

    def _lose(self, reason: str) -> None:
        """Another process holds the lease now: become a standby."""
        was_leading, generation = self._leading, self.generation
        self.generation = None
        self._valid_until = 0.0
        self._leading = False
        self._seen = None
        if was_leading:
            log.warning("leader.lost", replica=self.replica_id, generation=generation, reason=reason)
            if self.on_lost is not None:
                self.on_lost()
        else:
            log.info("leader.standby", replica=self.replica_id, reason=reason)
