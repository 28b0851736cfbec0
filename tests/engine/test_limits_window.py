"""The RPM limit is a hard ceiling over every sliding minute, not only a rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from mmat.engine.limits import RequestLimiter, SlidingWindowLimit


def test_window_refuses_the_limit_plus_one_th_grant_until_the_oldest_ages_out() -> None:
    window = SlidingWindowLimit(3, window_s=60.0, margin_s=0.0)
    for t in (0.0, 1.0, 2.0):
        assert window.wait_time(t) == 0.0
        window.take(t)
    assert window.wait_time(30.0) == 30.0  # the grant at t=0 leaves the window at t=60
    assert window.wait_time(60.0) == 0.0


async def test_the_limiter_waits_for_the_window_even_with_bucket_tokens_left() -> None:
    limiter = RequestLimiter(100, rpm=2, adaptive=False, burst_s=60.0)  # the bucket alone would allow 2 more
    assert limiter.rpm_window is not None
    now = time.monotonic()
    limiter.rpm_window.take(now)
    limiter.rpm_window.take(now)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(), timeout=0.3)
    assert limiter.in_flight == 0
