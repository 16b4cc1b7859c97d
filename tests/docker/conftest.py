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
from labs.runner import execute
from labs.settings import LABEL, OWNER, OWNER_LABEL
from labs.spec import plan


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
def network_leaves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, frozenset[str], float, float]]:
    """Every Docker call the test makes by which containers leave networks, as (call, the networks it can
    empty a member of, began, ended) on the monotonic clock: a disconnect its network; a remove the networks
    the container is still on when the call is made; a kill or stop any ("*")."""
    calls: list[tuple[str, frozenset[str], float, float]] = []

    def spy(cls: type, method: str, networks) -> None:
        original = getattr(cls, method)

        def timed(self, *args, **kwargs):
            on, began = networks(self), time.monotonic()
            try:
                return original(self, *args, **kwargs)
            finally:
                what = getattr(self, "name", None) or self.id[:12]
                calls.append((f"{cls.__name__}.{method} {what}", on, began, time.monotonic()))

        monkeypatch.setattr(cls, method, timed)

    def still_on(container: Container) -> frozenset[str]:
        try:
            return frozenset(container.client.api.inspect_container(container.id)["NetworkSettings"]["Networks"])
        except docker.errors.NotFound:
            return frozenset()

    spy(Container, "remove", still_on)
    for method in ("kill", "stop"):
        spy(Container, method, lambda container: frozenset({"*"}))
    spy(Network, "disconnect", lambda network: frozenset({network.name}))
    return calls


def overlapping(calls: list[tuple[str, frozenset[str], float, float]]) -> list[tuple[str, str]]:
    """Pairs of calls that ran at the same time and could both empty a member of one network."""
    def share(a: frozenset[str], b: frozenset[str]) -> bool:
        return bool(a & b) or ("*" in a and bool(b)) or ("*" in b and bool(a))

    return [(a[0], b[0]) for i, a in enumerate(calls) for b in calls[i + 1:]
            if a[2] < b[3] and b[2] < a[3] and share(a[1], b[1])]
