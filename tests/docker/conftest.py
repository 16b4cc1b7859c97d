"""The engine and images are prepared once per session, the way `make scenario-pubsub` prepares them."""

from __future__ import annotations

import time
from typing import Iterator

import docker
import pytest
from docker.models.containers import Container
from docker.models.networks import Network

from labs import scenario
from labs.infra.engine import ensure_engine
from labs.infra.images import ImageSet, ensure_images
from labs.infra.stack import remove_leftovers
from labs.report.result import RunResult
from labs.runner import execute, plan
from labs.settings import LABEL, OWNER, OWNER_LABEL


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    c = ensure_engine(progress=lambda line: None)
    yield c
    c.close()


@pytest.fixture(scope="session")
def images(client: docker.DockerClient) -> ImageSet:
    return ensure_images(client, progress=lambda line: None)


def lab_resources(client: docker.DockerClient) -> tuple[list[str], list[str]]:
    """This session's labelled containers and networks (WSLAB_OWNER tells sessions on one engine apart)."""
    mine = {"label": [LABEL, f"{OWNER_LABEL}={OWNER}"]}
    listed = client.containers.list(all=True, filters=mine, sparse=True)
    containers = [c.attrs["Names"][0].lstrip("/") for c in listed]
    networks = [n.name for n in client.networks.list(filters=mine)]
    return containers, networks


@pytest.fixture
def nothing_left(client: docker.DockerClient) -> Iterator[None]:
    """Asserts that the test left no labelled container or network behind (and removes any it did)."""
    assert lab_resources(client) == ([], []), "leftovers from an earlier test"
    yield
    left = lab_resources(client)
    remove_leftovers(client, owner=OWNER)
    assert left == ([], []), f"left behind: {left}"


def run_scenario(client: docker.DockerClient, images: ImageSet, name: str) -> RunResult:
    """One scenario through the pipeline, as `python -m labs run NAME` runs it."""
    return execute(client, plan(scenario.load(name)), images)


@pytest.fixture
def membership_changes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float, float]]:
    """Every Docker call that can change a network's members (start, kill, stop, remove, connect,
    disconnect) the test makes, as (call, began, ended) on the monotonic clock."""
    calls: list[tuple[str, float, float]] = []

    def spy(cls: type, method: str) -> None:
        original = getattr(cls, method)

        def timed(self, *args, **kwargs):
            began = time.monotonic()
            try:
                return original(self, *args, **kwargs)
            finally:
                what = getattr(self, "name", None) or self.id[:12]
                calls.append((f"{cls.__name__}.{method} {what}", began, time.monotonic()))

        monkeypatch.setattr(cls, method, timed)

    for method in ("start", "kill", "stop", "remove"):
        spy(Container, method)
    for method in ("connect", "disconnect"):
        spy(Network, method)
    return calls


def overlapping(calls: list[tuple[str, float, float]]) -> list[tuple[str, str]]:
    """Pairs of membership changes that ran at the same time. A connect before the first start is left out:
    a created container only records its networks (its endpoints are made when it starts)."""
    starts = [began for call, began, _ in calls if call.startswith("Container.start")]
    first = min(starts, default=float("inf"))
    changes = sorted((c for c in calls if not (c[0].startswith("Network.connect") and c[2] < first)),
                     key=lambda c: c[1])
    pairs, latest = [], None  # latest: the change seen so far that ends last
    for change in changes:
        if latest is not None and change[1] < latest[2]:
            pairs.append((latest[0], change[0]))
        if latest is None or change[2] > latest[2]:
            latest = change
    return pairs
