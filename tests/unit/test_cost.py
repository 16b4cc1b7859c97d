"""The cost model of bench-replicas (labs/bench/cost.py) and the replica's JSON codec, from literal steps and
texts."""

from __future__ import annotations

import json

import pytest

from labs.app import codec
from labs.app.server import BadFrame, parse_frame
from labs.bench import cost


def step(variant: str, run: int, offered: float, cores: float, delivered: float = 1000.0) -> dict:
    return {"variant": variant, "run": run, "offered": offered, "delivered_per_s": delivered,
            "sent_per_s": delivered / 11, "lost": 0, "cpu": {"app-1": cores, "nginx": 0.1}, "host_cpu": 1.5}


def test_a_variant_names_the_replicas_options_as_its_command_line():
    assert cost.parse_variant("python/reader=raw/json=orjson").args == ("--reader", "raw", "--json", "orjson")
    assert cost.parse_variant("node") == cost.Variant("node", "node", ())


@pytest.mark.parametrize("text, words", [("go", "bad variant 'go'"), ("python/reader=fast", "bad option"),
                                         ("node/json=orjson", "bad option"), ("python,python", "distinct")])
def test_a_bad_variant_is_refused_with_what_is_wrong(text, words):
    with pytest.raises(cost.VariantError, match=words):
        cost.parse_variants(text)


def test_each_run_starts_with_the_next_variant():
    vs = cost.parse_variants("python,python/reader=raw,node")
    assert [[v.label for v in cost.order(vs, r)][0] for r in range(4)] == ["python", "python/reader=raw", "node",
                                                                          "python"]


def test_a_steps_cost_divides_the_replicas_cpu_alone_by_deliveries_and_broker_messages():
    c = cost.cost({**step("python", 1, 100, 0.05, delivered=1000.0), "sent_per_s": 100.0}, 3)
    assert c["replica_cores"] == 0.05
    assert c["us_per_delivery"] == pytest.approx(50.0)
    assert c["us_per_broker_message"] == pytest.approx(0.05 / 300 * 1e6)
    assert c["other_cores"] == pytest.approx(1.5 - 0.15)


def test_a_step_that_delivered_nothing_has_no_cost_rather_than_zero():
    c = cost.cost({**step("python", 1, 100, 0.05, delivered=0.0), "sent_per_s": 0.0}, 3)
    assert c["us_per_delivery"] is None and c["us_per_broker_message"] is None


def with_cost(s: dict) -> dict:
    return {**s, **cost.cost(s, 3)}


def test_the_ratio_is_the_median_of_pairs_measured_in_the_same_run_at_the_same_rate():
    steps = [with_cost(step("python", r, rate, py)) for r, rate, py in
             [(1, 100, 0.02), (2, 100, 0.04), (1, 200, 0.03), (2, 200, 0.09)]]
    steps += [with_cost(step("node", r, rate, 0.01)) for r in (1, 2) for rate in (100, 200)]
    steps += [with_cost(step("node", 3, 100, 0.01))]  # no python step beside it: no pair
    s = cost.summarize(steps, ["python", "node"], [100, 200])
    assert s["python"]["pairs"] == 4
    assert s["python"]["ratio_to_node"] == pytest.approx(3.5)  # median of 2, 4, 3, 9
    assert s["python"]["rates"]["100"]["runs"] == 2 and s["node"]["rates"]["100"]["runs"] == 3
    assert s["node"]["ratio_to_node"] == 1.0


def test_the_marginal_cost_is_the_slope_of_cores_over_deliveries():
    assert cost.slope([(1000.0, 0.05), (2000.0, 0.08), (4000.0, 0.14)]) == pytest.approx(30.0)
    assert cost.slope([(1000.0, 0.05)]) is None and cost.slope([(1000.0, None), (None, 0.1)]) is None


@pytest.fixture
def fast_codec():
    """A stand-in for orjson with its two differences that matter: compact output, and an integer past 64 bits
    read as a float."""
    def refuse(name):
        raise ValueError(name)

    def loads(data):
        return json.loads(data, parse_int=lambda t: int(t) if len(t) < 19 else float(t), parse_constant=refuse)

    codec._fast = (loads, lambda obj: json.dumps(obj, separators=(",", ":")).encode())
    yield
    codec.use("stdlib")


def test_with_the_fast_codec_a_long_integer_id_is_still_accepted(fast_codec):
    assert parse_frame('{"id": 12345678901234567890123}').id == "12345678901234567890123"
    assert codec.dumps({"a": 1}) == b'{"a":1}'


@pytest.mark.parametrize("text, code", [('{"id": "a", "ts": NaN}', 1007), ("x", 1007), ("[1]", 1008)])
def test_with_the_fast_codec_bad_frames_close_with_the_same_codes(fast_codec, text, code):
    with pytest.raises(BadFrame) as e:
        parse_frame(text)
    assert e.value.code == code
