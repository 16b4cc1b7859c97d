"""The reconnection backoff (socket.io-client's formula) and the scenario keys that shape it."""

import random

import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.scenario.backoff import backoff_delay

RECONNECTING = """
[topology]
replicas = 3
broker = "redis-pubsub"
[workload]
clients = 4
messages = 20
send_interval = 0.1
reconnect = true
{keys}
[expect]
lost = 0
"""


class Counting(random.Random):
    """A generator that counts its draws."""

    draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()


def test_without_randomization_the_delays_are_exact_and_nothing_is_drawn():
    rng = Counting(1)
    assert [backoff_delay(n, 0.05, 0.5, 0.0, rng) for n in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert [backoff_delay(n, 1.0, 5.0, 0.0, rng) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert rng.draws == 0


@pytest.mark.parametrize("initial, maximum, r", [(1.0, 5.0, 0.5), (1.0, 30.0, 1.0), (0.05, 0.5, 0.25), (2.0, 2.0, 0.5)])
def test_every_attempt_stays_within_its_jitter_band_and_under_the_maximum(initial, maximum, r):
    rng = random.Random(7)
    for attempt in range(80):
        base = initial * 2 ** min(attempt, 64)
        low, high = min(base * (1 - r), maximum), min(base * (1 + r), maximum)
        for _ in range(200):
            d = backoff_delay(attempt, initial, maximum, r, rng)
            assert low <= d <= high and d <= maximum, (attempt, d, low, high)


def test_the_jitter_spreads_over_its_whole_band():
    """socket.io's defaults: the first retry lands anywhere in 0.5-1.5 s, the second in 1-3 s."""
    rng = random.Random(3)
    first = [backoff_delay(0, 1.0, 5.0, 0.5, rng) for _ in range(5000)]
    second = [backoff_delay(1, 1.0, 5.0, 0.5, rng) for _ in range(5000)]
    assert 0.5 <= min(first) < 0.52 and 1.48 < max(first) <= 1.5
    assert 1.0 <= min(second) < 1.04 and 2.96 < max(second) <= 3.0
    assert sum(d < 1.0 for d in first) > 2000 and sum(d > 1.0 for d in first) > 2000


def test_jitter_before_the_cap_leaves_no_jitter_once_the_band_passes_the_maximum():
    """socket.io-client caps after it jitters: with its defaults the fifth attempt on waits exactly 5 s."""
    rng = random.Random(5)
    assert {backoff_delay(4, 1.0, 5.0, 0.5, rng) for _ in range(500)} == {5.0}
    fourth = [backoff_delay(3, 1.0, 5.0, 0.5, rng) for _ in range(2000)]
    assert min(fourth) >= 4.0 and 0 < sum(d < 5.0 for d in fourth) < 500


def test_a_seeded_generator_draws_the_same_delays_every_time():
    one = [backoff_delay(n % 6, 1.0, 30.0, 1.0, random.Random("c01")) for n in range(20)]
    two = [backoff_delay(n % 6, 1.0, 30.0, 1.0, random.Random("c01")) for n in range(20)]
    other = [backoff_delay(n % 6, 1.0, 30.0, 1.0, random.Random("c02")) for n in range(20)]
    assert one == two and one != other


def test_a_huge_attempt_number_is_the_maximum_not_an_overflow():
    assert backoff_delay(10_000, 0.001, 300.0, 0.0, random.Random(1)) == 300.0


@pytest.mark.parametrize("args", [(-1, 1.0, 5.0, 0.5), (0, 0.0, 5.0, 0.5), (0, 2.0, 1.0, 0.5), (0, 1.0, 5.0, 1.5)])
def test_impossible_settings_are_refused(args):
    with pytest.raises(ValueError):
        backoff_delay(*args, random.Random(1))


def test_without_backoff_keys_a_scenario_keeps_the_old_delays():
    wl = scenario.parse(RECONNECTING.format(keys=""), name="t").workload
    assert (wl.reconnect_delay, wl.reconnect_delay_max, wl.randomization) == (0.05, 0.5, 0.0)
    assert [wl.backoff(n, random.Random(1)) for n in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_the_socketio_defaults_parse_and_shape_the_delays():
    keys = "reconnect_delay = 1\nreconnect_delay_max = 5\nrandomization = 0.5"
    wl = scenario.parse(RECONNECTING.format(keys=keys), name="t").workload
    assert (wl.reconnect_delay, wl.reconnect_delay_max, wl.randomization) == (1.0, 5.0, 0.5)
    assert 0.5 <= wl.backoff(0, random.Random(1)) <= 1.5


def test_a_first_delay_past_the_default_maximum_becomes_a_fixed_delay():
    wl = scenario.parse(RECONNECTING.format(keys="reconnect_delay = 2"), name="t").workload
    assert [wl.backoff(n, random.Random(1)) for n in range(3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("keys, message", [
    ("randomization = 1.5", "randomization must be between 0 and 1, got 1.5"),
    ("randomization = -0.1", "randomization must be between 0 and 1"),
    ("reconnect_delay = 0", "reconnect_delay must be between 0.001 and 60, got 0"),
    ("reconnect_delay = 2\nreconnect_delay_max = 1", "reconnect_delay_max = 1 is below reconnect_delay = 2"),
    ("reconnect_delay_max = 0.01", "reconnect_delay_max = 0.01 is below reconnect_delay = 0.05"),
    ("reconnect_delay_max = 301", "reconnect_delay_max must be between 0.001 and 300"),
    ('randomization = "lots"', "randomization must be a number"),
])
def test_bad_backoff_keys_are_refused_in_one_line(keys, message):
    with pytest.raises(ScenarioError) as info:
        scenario.parse(RECONNECTING.format(keys=keys), name="t")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_backoff_key_without_reconnect_is_refused():
    text = RECONNECTING.format(keys="randomization = 0.5").replace("reconnect = true\n", "")
    with pytest.raises(ScenarioError, match="workload.randomization = 0.5 is ignored without reconnect = true"):
        scenario.parse(text, name="t")
