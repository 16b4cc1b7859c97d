"""The headline's note: a broker's p50 beside the no-broker p50 at the same offered rate."""

from labs import scenario
from labs.accounting.checker import Accounting
from labs.accounting.history import History
from labs.protocols.base import Outcome
from labs.protocols.websocket import broker_cost, offered


def outcome(name, p50_ms):
    return Outcome(scenario.load(name), History(), Accounting(latencies_ms=(p50_ms, p50_ms, p50_ms)))


def test_the_shipped_headline_offers_120_msgs_per_second_in_both_runs():
    assert offered(scenario.load("no-broker")) == 120
    assert offered(scenario.load("pubsub")) == 120


def test_a_broker_within_2x_gets_the_comparison_alone():
    line = broker_cost([outcome("no-broker", 1.5), outcome("pubsub", 2.4)], load=0.3, cores=2)
    assert line == ("pubsub p50 2.4 ms = 1.6x no-broker's 1.5 ms at 120 msg/s offered (+0.9 ms: the broker's two "
                    "extra hops, replica -> Redis -> replica)")


def test_past_2x_the_note_says_what_else_held_the_cpu():
    line = broker_cost([outcome("no-broker", 1.0), outcome("pubsub", 9.0)], load=7.5, cores=2)
    assert line.endswith("; more than 2x: each hop costs ~4.0 ms here against 1.0 ms for the whole path "
                         "without a broker (host load average 7.5 on 2 cores)")


def test_no_pair_at_one_rate_no_note():
    assert broker_cost([outcome("pubsub", 2.0)], load=0.1, cores=2) == ""
    # seed-glob offers 6 clients / 5 ms = 1200 msg/s: not comparable with the headline's 120
    assert broker_cost([outcome("no-broker", 1.0), outcome("seed-glob", 1.0)], load=0.1, cores=2) == ""
