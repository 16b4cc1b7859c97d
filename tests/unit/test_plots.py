"""The pictures' numbers from hand-written histories and steps, and the PNGs drawn from them."""

import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from labs.accounting.checker import account
from labs.accounting.history import FaultEvent, History, Received, Sent, Session
from labs.report import plots, series

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the file is a PNG that decodes."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    with Image.open(path) as image:
        image.load()
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 4, f"{path} is nearly blank"
    return struct.unpack(">II", data[16:24])


def chat() -> History:
    """a, b on app-1, c on app-2; a drops at 10.10 and comes back on app-2, c drops at 10.20 for good.
    Sends at 10.00, 10.05 (b) and 10.25; a-1 reaches b twice and its own sender once; zz is unknown."""
    return History(
        replicas=["app-1", "app-2", "app-3"],
        sessions=[Session("a", "app-1", 9.0, 10.1), Session("a", "app-2", 10.15), Session("b", "app-1", 9.0),
                  Session("c", "app-2", 9.0, 10.2)],
        sent=[Sent("a-1", "a", 10.0), Sent("b-1", "b", 10.05), Sent("a-2", "a", 10.25)],
        received=[Received("a-1", "b", 10.01), Received("a-1", "c", 10.02), Received("b-1", "a", 10.06),
                  Received("a-1", "b", 10.3), Received("a-1", "a", 10.03), Received("zz", "b", 10.04),
                  Received("a-2", "b", 10.32)],
        faults=[FaultEvent("pause-redis", "redis", 10.12, 10.18)])


def test_a_delivery_is_the_first_copy_at_someone_other_than_the_sender():
    assert series.delivery_times(chat()) == [10.01, 10.02, 10.06, 10.32]


def test_rates_bucket_sends_and_deliveries_from_the_first_send_per_second():
    r = series.rates(chat(), width_s=0.1)
    assert r.starts == pytest.approx((0.0, 0.1, 0.2, 0.3))
    assert r.sent_per_s == pytest.approx((20.0, 0.0, 10.0, 0.0))  # 2 sends in 0-0.1 s, 1 in 0.2-0.3 s
    assert r.delivered_per_s == pytest.approx((30.0, 0.0, 0.0, 10.0))  # the duplicate at 10.30 not counted


def test_a_run_gets_the_smallest_bucket_that_keeps_it_to_60_buckets():
    assert series.rates(chat()).width_s == 0.01 and len(series.rates(chat()).starts) == 33
    assert [series.bucket_width(s) for s in (0.0, 0.6, 0.61, 6.0, 100.0, 1e6)] == [0.01, 0.01, 0.02, 0.1, 2.0, 60.0]


def test_nothing_sent_means_no_rates_and_no_fault_spans():
    h = History(replicas=["app-1"], faults=[FaultEvent("kill-replica", "app-1", 1.0, 2.0)])
    assert series.rates(h) == series.Rates(1.0) and series.fault_spans(h, account(h).windows) == []


def test_fault_spans_are_relative_to_the_first_send_with_the_accountings_window():
    h = chat()
    # c's drop at 10.20 falls inside the fault (10.12-0.5 .. 10.18+0.5) and it never came back: the window
    # closes at the fault's allowance, 5 s after the heal (+0.5), 15.68 s = 5.68 s after the first send
    (span,) = series.fault_spans(h, account(h).windows)
    assert span.label == "pause-redis redis"
    assert (span.applied, span.healed) == pytest.approx((0.12, 0.18))
    assert span.window == pytest.approx((-0.38, 5.68))
    unhealed = History(sent=[Sent("x", "a", 5.0)], faults=[FaultEvent("restart-redis", "redis", 6.0)])
    assert series.fault_spans(unhealed, [(5.5, 7.0)]) == [
        series.FaultSpan("restart-redis redis", 1.0, math.inf, (0.5, 2.0))]


def test_the_time_axis_shows_every_finite_fault_whole():
    r = series.Rates(0.5, (0.0, 0.5), (2.0, 2.0), (20.0, 20.0))
    assert series.extent(r, []) == (0.0, 1.0)
    healed_late = series.FaultSpan("kill-replica app-2", 0.8, 1.6, (0.3, 2.1))
    assert series.extent(r, [healed_late]) == (0.0, 2.1)
    never = series.FaultSpan("restart-redis redis", 0.2, math.inf, (-0.3, math.inf))
    assert series.extent(r, [never]) == (-0.3, 1.0)


def test_placement_at_the_end_counts_last_connections_still_open():
    h = chat()
    assert account(h).placement == {"app-1": 2, "app-2": 1, "app-3": 0}
    assert series.placement_at_end(h) == {"app-1": 1, "app-2": 1, "app-3": 0}  # c never came back
    assert series.reconnected(h)
    assert not series.reconnected(History(sessions=[Session("a", "app-1", 0.0)]))


def test_the_run_pictures_are_pngs_of_the_size_asked(tmp_path):
    h = chat()
    timeline = plots.timeline_png(h, account(h).windows, tmp_path / "t.png", title="chat")
    placement = plots.placement_png(account(h).placement, series.placement_at_end(h), tmp_path / "p.png")
    assert png_size(timeline) == (800, 320) and timeline.stat().st_size > 10_000
    assert png_size(placement) == (680, 300) and placement.stat().st_size > 5_000


@pytest.mark.parametrize("h", [
    History(replicas=["app-1", "app-2"]),  # nobody got in, nothing sent
    History(replicas=["app-1"], sessions=[Session("a", "app-1", 0.0), Session("b", "app-1", 0.0)],
            sent=[Sent("a-1", "a", 1.0)]),  # sent, never delivered
], ids=["nothing-sent", "nothing-delivered"])
def test_a_run_without_deliveries_still_gets_both_pictures(tmp_path, h):
    acc = account(h)
    assert png_size(plots.timeline_png(h, acc.windows, tmp_path / "t.png")) == (800, 320)
    assert png_size(plots.placement_png(acc.placement, None, tmp_path / "p.png"))[1] == 300


def step(pattern: str, replicas: int, offered: float, p99: float | None, **cpu: float) -> dict:
    return {"pattern": pattern, "replicas": replicas, "offered": offered, "delivered_per_s": offered * 11,
            "lost": 0, "p50_ms": None if p99 is None else p99 / 4, "p90_ms": None, "p99_ms": p99, "max_ms": p99,
            "cpu": cpu or {"app-1": 0.4, "redis": 0.1, "nginx": 0.2, "generator": 0.5}}


STEPS = [step("pubsub", 3, 1000.0, 7.9), step("none", 2, 500.0, 2.0), step("pubsub", 3, 500.0, 1.5),
         step("pubsub", 1, 500.0, 3.0), step("pubsub", 3, 2000.0, None), step("none", 2, 1000.0, 80.0)]


def test_steps_group_by_pattern_and_replicas_in_offered_order():
    groups = plots.capacity_series(STEPS)
    assert list(groups) == [("pubsub", 1), ("pubsub", 3), ("none", 2)]
    assert [s["offered"] for s in groups[("pubsub", 3)]] == [500.0, 1000.0, 2000.0]
    assert plots.series_label(("pubsub", 3)) == "pubsub x3"


def test_a_step_that_delivered_nothing_is_skipped_on_the_latency_picture():
    rows = plots.capacity_series(STEPS)[("pubsub", 3)]
    assert plots.latency_points(rows) == [(5500.0, 1.5, 0.375), (11000.0, 7.9, 1.975)]


def test_a_step_without_a_key_is_refused_by_its_index():
    bad = [step("none", 1, 100.0, 1.0), {"pattern": "none", "replicas": 1, "offered": 200.0}]
    with pytest.raises(ValueError, match="capacity step 1 has no delivered_per_s, p50_ms, p99_ms, cpu"):
        plots.capacity_series(bad)


def test_the_capacity_pictures_are_written_even_when_nothing_was_delivered(tmp_path):
    written = plots.capacity_pngs(STEPS, tmp_path / "capacity", cores=2)
    assert [p.name for p in written] == ["latency-vs-throughput.png", "cpu.png"]
    assert png_size(written[0]) == (850, 450) and written[0].stat().st_size > 10_000
    assert png_size(written[1])[0] > 800 and written[1].stat().st_size > 10_000  # three panels side by side
    empty = plots.capacity_pngs([step("streams", 4, 100.0, None)], tmp_path / "empty", cores=None)
    assert all(png_size(p) for p in empty)


def test_containers_are_ordered_replicas_by_number_then_the_rest_then_the_generator():
    names = ["generator", "redis", "app-10", "nginx", "app-2", "app-1"]
    assert sorted(names, key=plots._container_order) == ["app-1", "app-2", "app-10", "nginx", "redis", "generator"]


def test_matplotlib_is_imported_only_when_a_picture_is_drawn():
    code = "import sys, labs.cli, labs.report.files; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
