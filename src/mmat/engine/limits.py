"""How fast the engine may call the teacher: concurrency (adaptive), RPM, TPM, Retry-After, backoff.

:class:`RequestLimiter` is the one gate every teacher request passes. It holds

* a concurrency limit that adapts by AIMD to overload: it grows by about one request per round trip
  while calls succeed, halves (at most once per second) on a 503, and shrinks by a tenth when latency
  rises to three times its baseline (the server is queueing);
* a request rate that adapts by AIMD to rate limits: the first 429 starts a learned rate at 90 % of the
  successes per second just seen (or, before ten replies came back, of one request per Retry-After), each further 429 cuts it by a fifth (at most once per second, never
  below 80 % of the rate that just succeeded), and
  every success raises it by about one request per second per second;
* token buckets for requests per minute and tokens per minute (a request takes its estimated prompt
  tokens, images included, plus ``max_tokens``; the estimate is corrected with the real usage);
* a global pause: a ``Retry-After`` stops every new request until it has passed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up; may go into debt for big takes."""

    def __init__(self, rate_per_s: float, capacity: float) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the capacity) is available; 0 when it is now."""
        self._refill()
        need = min(amount, self.capacity)
        if self.tokens >= need:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.tokens -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.tokens = min(self.capacity, self.tokens + amount)


class SlidingWindowLimit:
    """At most ``limit`` grants in any ``window_s`` seconds: a per-minute quota as a hard ceiling.

    A token bucket paces requests evenly but lets a full bucket's burst through on top of a whole
    minute's rate, so a server counting requests per sliding minute could see slightly more than the
    RPM. This log of the last ``limit`` grant times closes that gap; ``margin_s`` absorbs the jitter
    between granting a request here and its arrival at the server.
    """

    def __init__(self, limit: int, window_s: float = 60.0, margin_s: float = 1.0) -> None:
        self.limit = max(1, limit)
        self.window_s = window_s + margin_s
        self.times: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self.times and now - self.times[0] >= self.window_s:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0.0
        return self.times[0] + self.window_s - now

    def take(self, now: float) -> None:
        self.times.append(now)


@dataclass
class LimiterStats:
    limit: float = 0.0
    in_flight: int = 0
    decreases: int = 0
    paused_s: float = 0.0
    learned_rps: float | None = None


class RequestLimiter:
    """The gate of teacher requests: adaptive concurrency, RPM and TPM buckets, Retry-After pauses.

    Args:
        max_concurrency: the ceiling of concurrent requests.
        rpm: requests per minute (None: no limit).
        tpm: tokens per minute (None: no limit).
        adaptive: adapt concurrency and rate by AIMD (off: fixed at ``max_concurrency`` and ``rpm``).
        burst_s: how many seconds of RPM/TPM may go out at once.
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        adaptive: bool = True,
        burst_s: float = 0.5,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.adaptive = adaptive
        self.limit = float(self.max_concurrency)
        self.in_flight = 0
        self.rpm = TokenBucket(rpm / 60.0, rpm / 60.0 * burst_s) if rpm else None
        self.rpm_window = SlidingWindowLimit(rpm) if rpm else None
        self.tpm = TokenBucket(tpm / 60.0, tpm / 60.0 * burst_s) if tpm else None
        self.pause_until = 0.0
        self.stats = LimiterStats(limit=self.limit)
        self._cond = asyncio.Condition()
        self._last_decrease = 0.0
        self._latency_fast = 0.0
        self._latency_base = float("inf")
        self._latency_n = 0
        self.learned: TokenBucket | None = None
        self._last_rate_decrease = 0.0
        self._ok_times: collections.deque[float] = collections.deque()
        self._first_ok: float | None = None

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a free slot, the pause, and the RPM/TPM buckets; then take them."""
        async with self._cond:
            while True:
                now = time.monotonic()
                wait = self.pause_until - now
                if wait <= 0 and self.in_flight < max(1, int(self.limit)):
                    wait = max(
                        self.rpm.wait_time(1) if self.rpm else 0.0,
                        self.tpm.wait_time(tokens) if self.tpm else 0.0,
                        self.learned.wait_time(1) if self.learned else 0.0,
                        self.rpm_window.wait_time(now) if self.rpm_window else 0.0,
                    )
                    if wait <= 0:
                        break
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), timeout=wait)
                else:
                    await self._cond.wait()
            if self.rpm:
                self.rpm.take(1)
            if self.rpm_window:
                self.rpm_window.take(time.monotonic())
            if self.tpm:
                self.tpm.take(tokens)
            if self.learned:
                self.learned.take(1)
            self.in_flight += 1
            if self.in_flight < int(self.limit):
                self._cond.notify(1)  # the next waiter checks for itself; no thundering herd
            self.stats.in_flight = self.in_flight

    async def release(
        self,
        *,
        ok: bool,
        latency_s: float = 0.0,
        error_kind: str | None = None,
        retry_after: float | None = None,
        used_tokens: int | None = None,
        estimated_tokens: int = 0,
    ) -> None:
        """Give the slot back and adapt: success grows the limit, overload shrinks it."""
        async with self._cond:
            self.in_flight -= 1
            self.stats.in_flight = self.in_flight
            now = time.monotonic()
            if self.tpm is not None and used_tokens is not None:
                self.tpm.give_back(estimated_tokens - used_tokens)
            if retry_after is not None and retry_after > 0:
                self.pause_until = max(self.pause_until, now + retry_after)
            if self.adaptive:
                if ok:
                    self._on_latency(latency_s, now)
                    self.limit = min(float(self.max_concurrency), self.limit + 1.0 / max(1.0, self.limit))
                    self._on_success_rate(now)
                elif error_kind == "rate_limit":
                    self._decrease_rate(now, retry_after)
                elif error_kind == "overloaded":
                    self._decrease(0.5, now)
            self.stats.limit = self.limit
            self._cond.notify(1)

    def _on_success_rate(self, now: float) -> None:
        if self._first_ok is None:
            self._first_ok = now
        self._ok_times.append(now)
        while self._ok_times and self._ok_times[0] < now - 2.0:
            self._ok_times.popleft()
        if self.learned is not None:
            self.learned.rate += 1.0 / max(1.0, self.learned.rate)  # about +1 request/s each second
            self.learned.capacity = max(1.0, self.learned.rate / 4)
            self.stats.learned_rps = self.learned.rate

    def _success_rate(self, now: float) -> float:
        """Successes per second over the last two seconds (or since the first success)."""
        window = min(2.0, max(1.0, now - (self._first_ok or now)))
        return len([t for t in self._ok_times if t >= now - window]) / window

    def _decrease_rate(self, now: float, retry_after: float | None = None) -> None:
        if now - self._last_rate_decrease < 1.0:
            return
        seen = self._success_rate(now)
        if self.learned is None:
            if len(self._ok_times) >= 10:
                rate = 0.9 * seen
            elif retry_after:
                # no successes to measure yet (429s come back before any reply): a token bucket that
                # frees one request every ``retry_after`` seconds serves about 1/retry_after a second
                rate = 0.9 / retry_after
            else:
                return  # nothing to estimate a rate from: the Retry-After pause is all we act on
            rate = max(0.5, rate)
            self.learned = TokenBucket(rate, rate / 4)
            self.learned.tokens = 0.0
        else:
            self.learned.rate = max(0.2, self.learned.rate * 0.8, 0.8 * seen)
            self.learned.capacity = max(1.0, self.learned.rate / 4)
            self.learned.tokens = min(self.learned.tokens, 0.0)
        self._last_rate_decrease = now
        self.stats.learned_rps = self.learned.rate
        self.stats.decreases += 1

    def _decrease(self, factor: float, now: float) -> None:
        if now - self._last_decrease < 1.0:
            return
        self._last_decrease = now
        self.limit = max(1.0, self.limit * factor)
        self.stats.decreases += 1

    def _on_latency(self, latency_s: float, now: float) -> None:
        if latency_s <= 0:
            return
        self._latency_n += 1
        alpha = 0.05
        self._latency_fast = (
            latency_s if self._latency_n == 1 else (1 - alpha) * self._latency_fast + alpha * latency_s
        )
        if self._latency_n >= 50:
            self._latency_base = min(self._latency_base, self._latency_fast)
            if self._latency_fast > 3.0 * self._latency_base and now - self._last_decrease >= 2.0:
                self._decrease(0.9, now)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half of ``base * 2**(attempt-1)`` plus a random half."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    draw = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2
