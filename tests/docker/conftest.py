"""The engine and images are prepared once per session, the way `make scenario-pubsub` prepares them."""

from __future__ import annotations

from typing import Iterator

import docker
import pytest

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
