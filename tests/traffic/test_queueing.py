"""The M/G/c queue a predicted rate stands on: it agrees with the textbook where one exists (M/M/1's
sojourn tail, M/M/c's Erlang C mean), and its highest rate is where its own p99 crosses the bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deploybench.traffic.queueing import ServiceTimes, highest_rate, predicted_p99_ms, sojourn_ms
from deploybench.traffic.simulate import QUANTILES

MEAN_MS = 10.0  # exponential service: mu = 100 req/s per server


def _exponential(servers: int) -> ServiceTimes:
    return ServiceTimes(-MEAN_MS * np.log1p(-np.minimum(QUANTILES, 1 - 1e-6)), servers)


@pytest.mark.parametrize("rate", [30.0, 50.0])
def test_one_server_with_exponential_service_has_the_m_m_1_sojourn_p99(rate: float):
    # M/M/1: the sojourn time is exponential with rate mu - lambda, so p99 = ln(100) / (mu - lambda)
    expected = 1000 * math.log(100) / (1000 / MEAN_MS - rate)
    assert predicted_p99_ms(rate, _exponential(1)) == pytest.approx(expected, rel=0.06)


def test_two_servers_with_exponential_service_have_the_erlang_c_mean():
    rate, servers, mu = 150.0, 2, 1000 / MEAN_MS
    load = rate / mu
    tail = load**servers / math.factorial(servers) * servers / (servers - load)
    erlang_c = tail / (sum(load**k / math.factorial(k) for k in range(servers)) + tail)
    expected = 1000 * (erlang_c / (servers * mu - rate) + 1 / mu)
    assert sojourn_ms(rate, _exponential(servers)).mean() == pytest.approx(expected, rel=0.05)


def test_the_predicted_p99_never_falls_as_the_rate_rises():
    service = _exponential(2)
    p99s = [predicted_p99_ms(rate, service) for rate in (20.0, 60.0, 100.0, 140.0, 180.0)]
    assert p99s == sorted(p99s)


def test_the_highest_rate_meets_the_bound_and_a_step_above_it_does_not():
    service = _exponential(2)
    rate, p99 = highest_rate(service, 100.0, ceiling=1e9)
    assert p99 == predicted_p99_ms(rate, service) <= 100.0
    assert predicted_p99_ms(rate * 1.01, service) > 100.0
    assert rate < service.capacity_rps


def test_the_ceiling_caps_the_rate_and_a_service_slower_than_the_bound_gives_none():
    service = _exponential(1)
    assert highest_rate(service, 100.0, ceiling=10.0)[0] == 10.0
    assert highest_rate(service, 20.0, ceiling=1e9) is None  # service p99 alone is 46 ms
