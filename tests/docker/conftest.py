"""The engine and images are prepared once per session, the way `make scenario-pubsub` prepares them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container
from docker.models.networks import Network

from labs import scenario
from labs.errors import LabError
from labs.infra.engine import ensure_engine
from labs.infra.images import ImageSet, ensure_images
from labs.infra.stack import remove_leftovers
from labs.report import files, table
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


#: what a test already failed for having found or left behind: named once, then never held against a later
#: test (a container the engine wedged stays until dockerd restarts; it must not fail every test after it)
REPORTED: set[str] = set()


def _labelled(client: docker.DockerClient) -> list[tuple[str, str, str]]:
    """(kind, name, run id) of this session's labelled containers and networks (WSLAB_OWNER tells sessions
    on one engine apart), but those a test has already been failed for."""
    mine = {"label": [LABEL, f"{OWNER_LABEL}={OWNER}"]}
    found = [("container", c.attrs["Names"][0].lstrip("/"), c.attrs["Labels"][LABEL])
             for c in client.containers.list(all=True, filters=mine, sparse=True)]
    found += [("network", n.name, n.attrs["Labels"][LABEL]) for n in client.networks.list(filters=mine)]
    return [f for f in found if f[1] not in REPORTED]


def lab_resources(client: docker.DockerClient) -> tuple[list[str], list[str]]:
    """This session's labelled containers and networks, but those a test has already been failed for."""
    found = _labelled(client)
    return [n for kind, n, _ in found if kind == "container"], [n for kind, n, _ in found if kind == "network"]


def _clear(client: docker.DockerClient, found: list[tuple[str, str, str]], what: str) -> None:
    """Remove `found` and fail saying `what` it is; what cannot be removed (a wedged container: the error
    names it and how to clear it) is left out of every later check, so it fails one test, not every one."""
    REPORTED.update(name for _, name, _ in found)
    for run_id in sorted({run_id for _, _, run_id in found}):
        try:
            remove_leftovers(client, run_id, owner=OWNER)
        except LabError as exc:
            pytest.fail(f"{what}: {found}; {exc}", pytrace=False)
    REPORTED.difference_update(name for _, name, _ in found)  # removed: a later one of that name is news
    pytest.fail(f"{what}: {found}", pytrace=False)


@pytest.fixture
def nothing_left(client: docker.DockerClient) -> Iterator[None]:
    """Asserts that the test left no labelled container or network behind (and removes any it did)."""
    before = _labelled(client)
    if before:
        _clear(client, before, "leftovers from an earlier test")
    yield
    left = _labelled(client)
    if left:
        _clear(client, left, "left behind")


@contextmanager
def network_leaves() -> Iterator[list[tuple[str, frozenset[str], float, float]]]:
    """Every Docker call made meanwhile by which containers leave networks, as (call, the networks it can
    empty a member of, began, ended) on the monotonic clock: a disconnect its network; a remove the networks
    the container is still on when the call is made; a kill or stop any ("*")."""
    calls: list[tuple[str, frozenset[str], float, float]] = []

    def spy(patch: pytest.MonkeyPatch, cls: type, method: str, networks) -> None:
        original = getattr(cls, method)

        def timed(self, *args, **kwargs):
            on, began = networks(self), time.monotonic()
            try:
                return original(self, *args, **kwargs)
            finally:
                what = getattr(self, "name", None) or self.id[:12]
                calls.append((f"{cls.__name__}.{method} {what}", on, began, time.monotonic()))

        patch.setattr(cls, method, timed)

    def still_on(container: Container) -> frozenset[str]:
        try:
            return frozenset(container.client.api.inspect_container(container.id)["NetworkSettings"]["Networks"])
        except docker.errors.NotFound:
            return frozenset()

    with pytest.MonkeyPatch.context() as patch:
        spy(patch, Container, "remove", still_on)
        for method in ("kill", "stop"):
            spy(patch, Container, method, lambda container: frozenset({"*"}))
        spy(patch, Network, "disconnect", lambda network: frozenset({network.name}))
        yield calls


class Runs:
    """Every scenario a test runs whole, run once per session through the pipeline as `python -m labs run
    NAME` runs it; the tests that assert different things about one scenario share its result (or its
    failure). Each run is also checked for what every run owes: nothing with its label left afterwards, and
    no two calls at once that could each empty a member of one network (two at once can leave Docker 20.10
    counting an endpoint that is gone: labs.infra.stack.Lifecycle)."""

    def __init__(self, client: docker.DockerClient, images: ImageSet, results: Path) -> None:
        self.client, self.images, self.results = client, images, results
        self._done: dict[str, RunResult | BaseException] = {}
        self._written: dict[str, Path] = {}

    def __call__(self, name: str) -> RunResult:
        if name not in self._done:
            try:
                self._done[name] = self._run(name)
            except Exception as exc:  # noqa: BLE001 - every test of this scenario fails with it, none reruns it
                self._done[name] = exc
        done = self._done[name]
        if isinstance(done, BaseException):
            raise done
        return done

    def _run(self, name: str) -> RunResult:
        with network_leaves() as calls:
            result = execute(self.client, plan(scenario.load(name)), self.images)
        selector = {"label": f"{LABEL}={result.run_id}"}
        left = ([c.attrs["Names"][0].lstrip("/") for c in self.client.containers.list(all=True, filters=selector,
                                                                                      sparse=True)]
                + [n.name for n in self.client.networks.list(filters=selector)])
        assert left == [], f"{name} left {left}"
        assert overlapping(calls) == [], f"{name}: {overlapping(calls)}"
        return result

    def written(self, name: str) -> Path:
        """The scenario's results directory, as `labs run` writes it (result.json, report, logs, …)."""
        if name not in self._written:
            result = self(name)
            self._written[name] = files.write(result, self.results, table.table([result]))
        return self._written[name]


@pytest.fixture(scope="session")
def run_once(client: docker.DockerClient, images: ImageSet, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(client, images, tmp_path_factory.mktemp("results"))


def overlapping(calls: list[tuple[str, frozenset[str], float, float]]) -> list[tuple[str, str]]:
    """Pairs of calls that ran at the same time and could both empty a member of one network."""
    def share(a: frozenset[str], b: frozenset[str]) -> bool:
        return bool(a & b) or ("*" in a and bool(b)) or ("*" in b and bool(a))

    return [(a[0], b[0]) for i, a in enumerate(calls) for b in calls[i + 1:]
            if a[2] < b[3] and b[2] < a[3] and share(a[1], b[1])]
