"""The RPM/TPM limiter and the AIMD gate, on a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from embedding_operator.voyage import limiter as limiter_module
from embedding_operator.voyage.limiter import AdaptiveConcurrency, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _simulate(limiter: RateLimiter, clock: FakeClock, costs: list[int]) -> list[tuple[float, int]]:
    """Send every request as early as the limiter allows; return (time, tokens) per request."""
    sent = []
    for tokens in costs:
        wait = limiter.delay(tokens, clock.now)
        clock.now += wait
        assert limiter.delay(tokens, clock.now) == pytest.approx(0, abs=1e-9)
        limiter.admit(tokens, clock.now)
        sent.append((clock.now, tokens))
    return sent


def _max_in_window(sent: list[tuple[float, int]], window: float) -> tuple[int, int]:
    most_requests = most_tokens = 0
    for i, (start, _) in enumerate(sent):
        inside = [t for at, t in sent[i:] if at < start + window]
        most_requests = max(most_requests, len(inside))
        most_tokens = max(most_tokens, sum(inside))
    return most_requests, most_tokens


def test_never_more_than_rpm_in_any_window_and_close_to_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, tpm=10**9, clock=clock)
    start = clock.now
    sent = _simulate(limiter, clock, [10] * 600)
    assert _max_in_window(sent, 60.0)[0] <= 120
    minutes = (clock.now - start) / 60
    # 600 requests at 120/min: the limit-bound minimum is 5 minutes (less the first request).
    assert 4.9 <= minutes <= 5.0 * 1.03


def test_never_more_than_tpm_in_any_window_and_close_to_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10**6, tpm=400_000, clock=clock)
    start = clock.now
    costs = [7_000, 3_000, 12_000, 500] * 200  # 4.5M tokens: 11.25 minutes' worth
    sent = _simulate(limiter, clock, costs)
    assert _max_in_window(sent, 60.0)[1] <= 400_000
    minutes = (clock.now - start) / 60
    assert 11.0 <= minutes <= 11.25 * 1.03


def test_traffic_is_smooth_not_a_burst_per_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, tpm=10**9, clock=clock)
    sent = _simulate(limiter, clock, [1] * 100)
    # 600/min = 10/s: the first 100 requests take about 10 s, not an instant (a sliding window
    # alone would send all 100 at once); a burst of at most one second's worth.
    assert _max_in_window(sent, 1.0)[0] <= 21
    assert sent[-1][0] - sent[0][0] >= 9.0


def test_settle_refunds_overestimated_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10**6, tpm=60_000, clock=clock)
    # Fill the window with estimates, then learn they were half as much.
    reservations = []
    for _ in range(10):
        clock.now += limiter.delay(6_000, clock.now)
        reservations.append(limiter.admit(6_000, clock.now))
    blocked = limiter.delay(6_000, clock.now)
    for reservation in reservations:
        limiter.settle(reservation, 3_000)
    assert limiter.delay(6_000, clock.now) < blocked


def test_pause_until_holds_every_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=1000, tpm=10**9, clock=clock)
    limiter.pause_until(clock.now + 7)
    assert limiter.delay(1, clock.now) == pytest.approx(7)
    clock.now += 7
    assert limiter.delay(1, clock.now) == 0


def test_a_request_larger_than_the_bucket_is_admitted_and_paid_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=1000, tpm=60_000, clock=clock)  # bucket: ~1,000 tokens
    assert limiter.delay(30_000, clock.now) == 0
    limiter.admit(30_000, clock.now)
    # The debt is repaid at 1,000 tokens/s before the next request of any size.
    assert limiter.delay(1_000, clock.now) == pytest.approx(30.3, rel=0.02)


def test_acquire_sleeps_exactly_the_delay_and_serves_waiters_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:  # advances the fake clock instead of waiting
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(limiter_module.asyncio, "sleep", fake_sleep)

    async def scenario() -> list[float]:
        limiter = RateLimiter(rpm=1000, tpm=10**9, clock=clock)
        limiter.pause_until(clock.now + 5)
        first, second = await asyncio.gather(limiter.acquire(1), limiter.acquire(1))
        return [first.at, second.at]

    start = clock.now
    assert asyncio.run(scenario()) == [start + 5, start + 5]
    assert slept == [pytest.approx(5)]  # one wait, then both admitted (the bucket allows a burst)


def test_aimd_halves_on_throttle_and_recovers_additively() -> None:
    gate = AdaptiveConcurrency(16, probe=False)
    gate.on_throttle()
    assert gate.limit == 8
    gate.on_throttle()
    gate.on_throttle()
    gate.on_throttle()
    gate.on_throttle()
    assert gate.limit == 1
    for _ in range(1):
        gate.on_success()
    assert gate.limit == 2
    for _ in range(2):
        gate.on_success()
    assert gate.limit == 3
    for _ in range(1000):
        gate.on_success()
    assert gate.limit == 16


def test_gate_bounds_requests_in_flight() -> None:
    async def scenario() -> int:
        gate = AdaptiveConcurrency(3, probe=False)
        most = 0

        async def work() -> None:
            nonlocal most
            async with gate:
                most = max(most, gate.in_flight)
                await asyncio.sleep(0)
                await asyncio.sleep(0)

        await asyncio.gather(*(work() for _ in range(20)))
        return most

    assert asyncio.run(scenario()) == 3


def test_the_first_request_probes_alone_then_the_gate_opens() -> None:
    gate = AdaptiveConcurrency(8)
    assert gate.limit == 1
    gate.on_success()
    assert gate.limit == 8


class Provider:
    """Voyage's side on the fake clock: a sliding window that refuses what would exceed ``tpm``."""

    def __init__(self, tpm: int, window: float = 60.0) -> None:
        self.tpm, self.window = tpm, window
        self.accepted: list[tuple[float, int]] = []

    def used(self, now: float) -> int:
        return sum(t for at, t in self.accepted if at > now - self.window)

    def admit(self, tokens: int, now: float) -> bool:
        if self.used(now) + tokens > self.tpm:
            return False
        self.accepted.append((now, tokens))
        return True


def _run_against(
    provider: Provider, limiter: RateLimiter, clock: FakeClock, costs: list[int]
) -> tuple[int, list[int | None]]:
    """Send every request as early as the limiter allows; a refusal is retried after it."""
    refused = 0
    learned: list[int | None] = []
    for tokens in costs:
        while True:
            clock.now += limiter.delay(tokens, clock.now)
            reservation = limiter.admit(tokens, clock.now)
            if provider.admit(tokens, clock.now):
                limiter.settle(reservation, tokens)
                break
            refused += 1
            learned.append(limiter.throttled(reservation))
            clock.now += 1.0  # Retry-After
    return refused, learned


def test_a_429_teaches_the_limit_from_what_was_accepted_in_the_window_before_it() -> None:
    clock = FakeClock()
    provider = Provider(tpm=300_000)
    limiter = RateLimiter(rpm=10**6, tpm=8_000_000, clock=clock)  # the catalog's, too high
    start = clock.now
    refused, learned = _run_against(provider, limiter, clock, [5_000] * 600)  # 3M tokens
    # One refusal: the 61st request, after 60 x 5,000 = 300,000 accepted; then held there.
    assert refused == 1
    assert learned == [300_000] and limiter.tpm == limiter.learned_tpm == 300_000
    minutes = (clock.now - start) / 60
    # 3M tokens at 300k per minute: 10 minutes bound, less the first minute's burst.
    assert 9.0 <= minutes <= 10 * 1.03
    # Voyage took the window's tokens at once, so the limiter sends them again as soon as the
    # window frees (the sliding log paces), not trickled at 300k/60 s.
    assert sum(t for at, t in provider.accepted if start + 60 < at <= start + 62) == 300_000


def test_the_refused_request_is_refunded_and_a_learned_limit_never_rises() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10**6, tpm=100_000, clock=clock)
    for _ in range(4):
        limiter.settle(limiter.admit(10_000, clock.now), 10_000)
    refused = limiter.admit(10_000, clock.now)
    assert limiter.throttled(refused) == 40_000
    assert refused.tokens == 0 and limiter.delay(10_000, clock.now) > 0  # 40k held, 40k sent
    clock.now += 61
    # A later 429 after more was accepted does not raise it; one after less lowers it.
    for _ in range(3):
        limiter.settle(limiter.admit(10_000, clock.now), 10_000)
    assert limiter.throttled(limiter.admit(10_000, clock.now)) == 30_000
    assert limiter.tpm == 30_000


def test_nothing_is_learned_without_accepted_tokens_or_when_learning_is_off() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10**6, tpm=100_000, clock=clock)
    assert limiter.throttled(limiter.admit(10_000, clock.now)) is None  # another client's window
    assert limiter.tpm == 100_000 and limiter.learned_tpm is None
    off = RateLimiter(rpm=10**6, tpm=100_000, clock=clock, learn=False)
    off.settle(off.admit(50_000, clock.now), 50_000)
    assert off.throttled(off.admit(10_000, clock.now)) is None and off.tpm == 100_000


def test_charges_follow_what_voyage_counted_and_never_exceed_the_estimate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10**6, tpm=10**9, clock=clock)
    assert limiter.charge(1_000) == 1_000  # nothing counted yet: the estimate
    limiter.settle(limiter.admit(1_000, clock.now), 700, estimate=1_000)
    assert limiter.charge(1_000) == 735  # 0.7 x the 5% margin
    limiter.settle(limiter.admit(1_000, clock.now), 2_000, estimate=1_000)
    assert limiter.charge(1_000) == 1_000
