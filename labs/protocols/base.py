"""What a protocol adapter supplies to the one pipeline, and what its clients report to.

A protocol is the replica the containers run, the client that speaks to it, the records only it keeps,
its own metrics on top of the room accounting, and its own table columns. Everything else (the stack,
the faults, the client script, the drain, the room accounting, the verdict, the report) is shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Interface

from ..accounting.checker import Accounting
from ..accounting.history import History
from ..infra.images import Image, ImageSet
from ..scenario import AppKind, Metric, Scenario


@dataclass(frozen=True)
class Outcome:
    """What an adapter's table cells and result.json section are made of."""

    scenario: Scenario
    history: History
    accounting: Accounting
    #: how cookie stickiness was rendered for the nginx in use ("" when the policy is not cookie)
    sticky: str = ""


class LinkDown(Exception):
    """The link has no open connection (it dropped, or was never opened)."""


class JoinFailed(Exception):
    """A connection attempt did not get into the room; the message says why."""


class Sink(Interface):
    """Where a link reports what its connection received (the workload's client implements it)."""

    def on_message(self, msg_id: str, origin: str, seq: int | None) -> None: ...

    def on_ack(self, msg_id: str, replica: str, seq: int | None) -> None: ...

    def on_nack(self, msg_id: str) -> None: ...

    def on_trimmed(self, first: int | None, last: int | None, replayed: int) -> None: ...


def source_address(index: int, subnets: int) -> str:
    """The address client `index` stands for, one of `subnets` distinct /24s ("" for one: its own). Every
    link sends it as X-Forwarded-For, which nginx trusts from the lab's client network only (realip).

    198.18.0.0/15 is reserved for network benchmarks (RFC 2544): header values only, never contacted.
    """
    if subnets <= 1:
        return ""
    return f"198.18.{index % subnets}.{10 + index // subnets}"


class Link(ABC):
    """One scripted client's way to a replica through nginx, reopened after each drop."""

    #: the address the client stands for (an X-Forwarded-For value), "" for the host's own
    source = ""
    #: the close code of the connection that ended last (1006: it was cut, no close frame came); None: not
    #: known (a link that does not read it)
    close_code: int | None = None

    @abstractmethod
    async def open(self, timeout: float) -> str:
        """Connect and join the room; return the replica that serves it. Raise JoinFailed (or OSError,
        TimeoutError) when that did not happen within `timeout` s."""

    @abstractmethod
    async def send(self, msg_id: str, ts: float, body: str) -> None:
        """Send one message on the open connection; raise LinkDown when there is none."""

    @abstractmethod
    async def wait_closed(self) -> None:
        """Return once the current connection has ended (for whatever reason)."""

    async def drop_transport(self) -> None:
        """Close the current connection's transport as the client itself would when its network changed,
        without leaving (the close-transports fault). Only Socket.IO links can."""
        raise NotImplementedError(f"{type(self).__name__} cannot close its transport by itself")

    @abstractmethod
    async def close(self, *, grace: float) -> None:
        """End the client for good (the harness is done), giving a close `grace` s to go out."""


class ProtocolAdapter(ABC):
    app: AppKind
    #: the python module the replicas run (`python -m <module>`)
    app_module: str

    def replica_args(self, scenario: Scenario) -> tuple[str, ...]:
        return ()

    def replica_command(self) -> tuple[str, ...]:
        """The replicas' program; the stack adds --name, --port, --broker, --redis and `replica_args`."""
        return ("/opt/venv/bin/python", "-m", self.app_module)

    def replica_image(self, images: ImageSet) -> Image:
        """The image the replicas run."""
        return images.app

    def new_history(self) -> History:
        return History()

    def prepare(self) -> None:  # noqa: B027 - optional hook: most adapters need no process-wide setting
        """Process-wide client settings, once before the clients start."""

    @abstractmethod
    def link(self, name: str, index: int, sink: Sink, *, port: int, scenario: Scenario,
             history: History, host: str = "127.0.0.1") -> Link:
        """A link for client `name` (the `index`-th, from 0) to nginx at `host`:`port`."""

    def measures(self, history: History, acc: Accounting) -> dict[Metric, float | None]:
        """Metrics only this protocol measures, beside the room accounting's."""
        return {}

    @abstractmethod
    def columns(self, outcome: Outcome) -> dict[str, str]:
        """This protocol's cells of the results table, in order, for one run."""

    def kind(self, outcome: Outcome) -> str:
        """The detail table the run's columns go in: runs of one kind share their columns."""
        return self.app.value

    def to_json(self, outcome: Outcome) -> dict[str, Any]:
        """This protocol's own section of result.json."""
        return {}

    def notes(self, outcomes: list[Outcome]) -> list[str]:
        """Lines printed under its table."""
        return []
