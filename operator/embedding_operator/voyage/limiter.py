"""Client-side pacing: requests per minute, tokens per minute, and adaptive concurrency.

Voyage enforces RPM and TPM per organization and answers 429 when a minute holds too much. The
limiter keeps a run just under both, so a run finishes near the fastest time the account allows
without provoking 429s:

* a token bucket per resource (requests, tokens) refills at ``limit / window`` per second, so the
  traffic is smooth instead of a burst at the start of every minute;
* a sliding-window log (the rule the provider applies) is a hard cap: no ``window`` seconds ever
  hold more than the limit. The window is widened by :data:`WINDOW_MARGIN` because Voyage counts a
  request when it arrives, a little after we count it when it leaves.

Reservations use the batch's *estimated* tokens, scaled by the ratio of real to estimated tokens
seen so far, and are corrected with the real ``total_tokens`` from the response
(:meth:`RateLimiter.settle`): a run paced against a learned limit would otherwise lose a
request's worth of every window to the estimates' overshoot.

When Voyage answers 429 anyway (another client shares the organization's limits, or the limits
configured are higher than the account's, which Voyage does not disclose), the engine pauses all
new requests for the ``Retry-After`` time (:meth:`RateLimiter.pause_until`), halves the number of
requests in flight (:class:`AdaptiveConcurrency`, additive increase / multiplicative decrease) and
tells the limiter (:meth:`RateLimiter.throttled`), which *learns* the limit: the tokens Voyage
accepted in the window before the refused request are what the account allows (it refused the
next one), so the limiter lowers its TPM to that and holds there (just under the limit: it is
what Voyage accepted, and the window margin covers the network delay). Since Voyage just took
that much at once, the bucket stops smoothing and the sliding log alone paces: a run sends as
soon as the window frees. Without this, a run against an undisclosed limit only backs off
multiplicatively and spends a request on every 429.

Everything takes ``now`` explicitly or from an injectable clock, so it is unit-tested without
sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_MARGIN = 0.01
"""Fraction added to the window (0.6 s on 60 s): allowance for network delay and clock skew."""
BURST_SECONDS = 1.0
"""Bucket capacity in seconds of the rate: small, so traffic stays smooth."""
ESTIMATE_MARGIN = 1.05
"""Charges are the batch's estimate scaled by what Voyage really counted so far (estimates run
~40% high on prose), times this margin, and never above the estimate."""


class _Bucket:
    """A token bucket with capacity ``capacity`` refilling at ``rate`` per second."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, amount: float, now: float) -> float:
        self._refill(now)
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


@dataclass
class Reservation:
    """One admitted request: its time and the tokens it was charged."""

    at: float
    tokens: int
    entry: list[float] = field(repr=False)


class RateLimiter:
    """Admits requests under ``rpm`` and ``tpm``; see the module docstring for the algorithm."""

    def __init__(
        self,
        rpm: int,
        tpm: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        learn: bool = True,
    ) -> None:
        if rpm < 1 or tpm < 1:
            raise ValueError("rate limits must be positive")
        self.rpm, self.tpm = rpm, tpm
        self.learned_tpm: int | None = None
        """The TPM learned from 429s (see :meth:`throttled`), once there was one."""
        self.learn = learn
        self.provider_window = window
        self.window = window * (1 + WINDOW_MARGIN)
        self._clock = clock
        now = clock()
        self._requests = _Bucket(
            rpm / self.window, max(1.0, rpm / self.window * BURST_SECONDS), now
        )
        self._tokens = _Bucket(tpm / self.window, tpm / self.window * BURST_SECONDS, now)
        self._log: deque[list[float]] = deque()  # [time, tokens] per admitted request
        self._logged_tokens = 0.0
        self._paused_until = now
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._estimated = self._counted = 0  # estimated and real tokens of settled requests

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window:
            self._logged_tokens -= self._log.popleft()[1]

    def charge(self, estimate: int) -> int:
        """The tokens reserved for a request estimated at ``estimate`` (see ESTIMATE_MARGIN)."""
        if not self._estimated:
            return estimate
        scale = min(1.0, self._counted / self._estimated * ESTIMATE_MARGIN)
        return max(1, math.ceil(estimate * scale))

    def delay(self, tokens: int, now: float) -> float:
        """Seconds until a request of ``tokens`` may start (0: now)."""
        tokens = min(tokens, self.tpm)
        self._expire(now)
        waits = [self._paused_until - now]
        # The bucket may hold less than one request's tokens; let it go into debt instead of
        # waiting for a level it can never reach.
        waits.append(self._requests.wait(1, now))
        waits.append(self._tokens.wait(min(tokens, self._tokens.capacity), now))
        if len(self._log) + 1 > self.rpm:
            waits.append(self._log[len(self._log) - self.rpm][0] + self.window - now)
        excess = self._logged_tokens + tokens - self.tpm
        if excess > 0:
            freed = 0.0
            for at, spent in self._log:
                freed += spent
                if freed >= excess:
                    waits.append(at + self.window - now)
                    break
        return max(0.0, *waits)

    def admit(self, tokens: int, now: float) -> Reservation:
        """Record a request of ``tokens`` as sent at ``now`` (call when :meth:`delay` is 0)."""
        self._requests.take(1, now)
        self._tokens.take(tokens, now)
        entry = [now, float(tokens)]
        self._log.append(entry)
        self._logged_tokens += tokens
        return Reservation(now, tokens, entry)

    def settle(self, reservation: Reservation, actual_tokens: int, estimate: int = 0) -> None:
        """Correct a reservation with the tokens Voyage really counted (``estimate``: what the
        caller had estimated, to scale later charges)."""
        if estimate > 0:
            self._estimated += estimate
            self._counted += actual_tokens
        diff = actual_tokens - reservation.tokens
        # An entry younger than the window has not been expired from the log yet.
        if reservation.entry[0] > self._clock() - self.window:
            reservation.entry[1] += diff
            self._logged_tokens += diff
        if diff < 0:
            self._tokens.give_back(-diff)
        else:
            self._tokens.take(diff, self._clock())
        reservation.tokens = actual_tokens
        self._changed.set()

    def throttled(self, reservation: Reservation) -> int | None:
        """Voyage refused ``reservation`` with a 429: it counted none of its tokens, and what it
        accepted in the window before it is the account's limit. Lower the TPM to just under
        that (never raise it). Returns the TPM now held when it explains the 429, None when it
        does not (nothing learned: the caller slows down by other means)."""
        entry = reservation.entry
        if any(
            other is entry for other in self._log
        ):  # refund: the refused request is not in Voyage's window either
            self._logged_tokens -= entry[1]
        self._tokens.give_back(entry[1])
        entry[1] = 0.0
        reservation.tokens = 0
        self._changed.set()
        if not self.learn:
            return None
        since = reservation.at - self.provider_window
        accepted = 0.0
        for other in self._log:  # sent before the refused one, in the provider's window
            if other is entry:
                break
            if other[0] > since:
                accepted += other[1]
        limit = int(accepted)
        if limit >= self.tpm and self.learned_tpm is not None:
            return self.tpm  # sent before the limit was learned, or a burst that still fits
        if limit < 1 or limit >= self.tpm:
            # Nothing accepted before it (another client holds the window), or our own count
            # was under the limit: not a limit we can learn; the pause and the gate handle it.
            return None
        self.tpm = self.learned_tpm = limit
        # Voyage just showed it takes the whole window's tokens at once, so the bucket no longer
        # smooths them: the sliding log (the provider's own rule) alone paces, and a run sends
        # as soon as the window frees instead of trickling at limit/window.
        self._tokens.rate, self._tokens.capacity = limit / self.window, float(limit)
        return limit

    def pause_until(self, until: float) -> None:
        """Admit nothing before ``until`` (a 429's Retry-After)."""
        self._paused_until = max(self._paused_until, until)

    async def acquire(self, estimate: int) -> Reservation:
        """Wait until a request estimated at ``estimate`` tokens may start; admit it (charged
        per :meth:`charge`). Waiters are served in order."""
        async with self._lock:
            while True:
                now = self._clock()
                tokens = self.charge(estimate)
                wait = self.delay(tokens, now)
                if wait <= 0:
                    return self.admit(tokens, now)
                await self._nap(wait)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a response changes the accounting meanwhile: estimates
        run above the real counts, and a waiter must not oversleep a refund."""
        self._changed.clear()
        nap = asyncio.ensure_future(asyncio.sleep(seconds))
        woken = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((nap, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            woken.cancel()


class AdaptiveConcurrency:
    """A semaphore whose size follows AIMD: halved on a 429, +1 after a window of successes.

    It starts at 1 and opens fully on the first success: the first request probes the key, the
    model and the options alone, so a run that cannot work fails after exactly one request.
    """

    def __init__(self, maximum: int, *, probe: bool = True) -> None:
        if maximum < 1:
            raise ValueError("concurrency must be at least 1")
        self.maximum = maximum
        self.limit = 1 if probe else maximum
        self.in_flight = 0
        self._successes = 0
        self._probing = probe
        self._changed = asyncio.Condition()

    def on_success(self) -> None:
        if self._probing:
            self._probing = False
            self.limit = self.maximum
            return
        self._successes += 1
        if self.limit < self.maximum and self._successes >= self.limit:
            self.limit += 1
            self._successes = 0

    def on_throttle(self) -> None:
        self._probing = False
        self.limit = max(1, self.limit // 2)
        self._successes = 0

    async def __aenter__(self) -> AdaptiveConcurrency:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()
