"""The recovery knobs and the close-transports fault as a scenario states them: validated before anything
starts, passed to the Node server on its command line, and the fault acting on the scripted clients."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from labs import scenario
from labs.errors import ScenarioError
from labs.protocols import for_app
from labs.scenario import Broker, FaultKind, Metric
from labs.workload import Clients

REC = """
[topology]
app = "seed-node-socketio"
broker = "redis-streams"
maxlen = 500
max_disconnection_duration = 2.5
[workload]
clients = 4
messages = 40
rate = 10
reconnect = true
[[faults]]
kind = "close-transports"
target = "app-1"
at = 1.0
[expect]
recovered_drops = 1
gap_filled_ratio = { min = 0.5 }
"""


def parse(text: str) -> scenario.Scenario:
    return scenario.parse(text, name="t")


def test_the_streams_server_gets_its_max_len_and_session_lifetime_on_its_command_line() -> None:
    s = parse(REC)
    assert s.topology.broker is Broker.REDIS_STREAMS and s.faults[0].kind is FaultKind.CLOSE_TRANSPORTS
    assert s.expect[Metric.RECOVERED_DROPS].min == 1
    args = for_app(s.topology.app).replica_args(s)
    assert args == ("--maxlen", "500", "--max-disconnection-ms", "2500")
    classic = parse(REC.replace('"redis-streams"', '"redis-pubsub"').replace("maxlen = 500\n", "")
                    .replace("max_disconnection_duration = 2.5\n", ""))
    assert for_app(classic.topology.app).replica_args(classic) == ()


def test_close_transports_targets_every_client_by_default() -> None:
    s = parse(REC.replace('target = "app-1"\n', ""))
    assert s.faults[0].target == "all"


@pytest.mark.parametrize("change, message", [
    (("broker = \"redis-streams\"\nmaxlen = 500\n", "broker = \"redis-pubsub\"\n"),
     'topology.max_disconnection_duration = 2.5 is ignored by app = "seed-node-socketio" with broker = '
     '"redis-pubsub" (only app = "seed-node-socketio" with broker = "redis-streams" or app = "socketio" with broker = '
     '"redis-streams" keeps sessions for recovery)'),
    (("max_disconnection_duration = 2.5", "max_disconnection_duration = 0"),
     "max_disconnection_duration"),
    (('target = "app-1"', 'target = "app-9"'),
     'close-transports needs target app-1..app-3 (the clients on that replica) or "all" (every client), '
     "got 'app-9'"),
    (('app = "seed-node-socketio"\nbroker = "redis-streams"\nmaxlen = 500\nmax_disconnection_duration = 2.5',
      'app = "websocket"\nbroker = "redis-streams"'),
     "close-transports closes Socket.IO clients' transports; app = \"websocket\" has none"),
])
def test_bad_recovery_scenarios_are_refused_with_the_key_and_value(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in REC
    with pytest.raises(ScenarioError) as info:
        parse(REC.replace(old, new))
    assert message in str(info.value)


def test_a_recovery_metric_is_refused_for_an_app_that_cannot_measure_it() -> None:
    text = REC.replace('app = "seed-node-socketio"', 'app = "websocket"').replace(
        "max_disconnection_duration = 2.5\n", "")
    text = text[:text.index("[[faults]]")] + "[expect]\nreplayed = 0\n"
    with pytest.raises(ScenarioError, match='expect.replayed is measured for app = "socketio" only'):
        parse(text)


class FakeLink:
    def __init__(self) -> None:
        self.dropped = 0

    async def drop_transport(self) -> None:
        self.dropped += 1


def test_the_fault_closes_the_transports_of_the_clients_on_its_replica_from_its_own_thread() -> None:
    async def main() -> tuple[list[str], list[str], list[int]]:
        clients = [SimpleNamespace(name=n, current=cur, link=FakeLink()) for n, cur in
                   (("c1", ("app-1", 0.0)), ("c2", ("app-2", 0.0)), ("c3", ("app-1", 0.0)), ("c4", None))]
        handle = Clients(clients)  # type: ignore[arg-type]
        names: dict[str, list[str]] = {}

        def fault(target: str) -> None:
            names[target] = handle.close_transports(target)

        for target in ("app-1", "all"):
            thread = threading.Thread(target=fault, args=(target,))
            thread.start()
            await asyncio.to_thread(thread.join)
        return names["app-1"], names["all"], [c.link.dropped for c in clients]

    on_app1, every, dropped = asyncio.run(main())
    assert on_app1 == ["c1", "c3"] and every == ["c1", "c2", "c3"]  # c4 is away: nothing to close
    assert dropped == [2, 1, 2, 0]
