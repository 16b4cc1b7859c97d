"""The chat page in a real browser: headless Chromium (Debian's package, never a downloaded one) driven by
Playwright, two tabs on two replicas of a real stack behind nginx.

Chromium is launched with the flags it needs on this closed network (without the networking ones it stalls)
and an empty profile directory. Every wait is on a page condition (Playwright's expect), never a sleep.
Set WSLAB_SCREENSHOT=docs/trainer-chat.png to save the PubSub page as the README's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labs import scenario
from labs.infra.launch import open_stack
from labs.infra.running import RunningStack
from labs.infra.stack import http_get
from labs.settings import LABEL
from labs.spec import plan, stack_spec

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extras: make setup")
from playwright.sync_api import BrowserContext, Page, expect  # noqa: E402

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
#: a page on a replica that answers within this long (ms): the stack is up before the browser starts
WAIT_MS = 10_000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system chromium: `make browser` installs it")


@contextmanager
def stack_of(client, images, name: str) -> Iterator[RunningStack]:
    """The scenario's stack as `up` builds it; afterwards nothing with its run's label remains."""
    spec, _ = stack_spec(client, plan(scenario.load(name)), images)
    try:
        with open_stack(client, spec) as stack:
            yield stack
    finally:
        selector = {"label": f"{LABEL}={spec.run_id}"}
        assert client.containers.list(all=True, filters=selector, sparse=True) == []
        assert client.networks.list(filters=selector) == []


@contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """Headless system Chromium with an empty profile; its tabs share nothing but that profile."""
    profile.mkdir()
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                        args=FLAGS)
        try:
            yield context
        finally:
            context.close()


def open_tab(context: BrowserContext, port: int) -> tuple[Page, str]:
    """A new tab on the chat page, once its WebSocket is open; returns the tab and the replica it is on."""
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    expect(page.locator("#replica")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    return page, page.locator("#replica").inner_text()


def tabs_on_two_replicas(context: BrowserContext, port: int) -> tuple[Page, Page, Page]:
    """Tabs until two share a replica and another is elsewhere (round-robin gives each new tab the next
    replica): (sender, a tab on the sender's replica, a tab on another replica)."""
    tabs: list[tuple[Page, str]] = []
    for _ in range(7):
        tabs.append(open_tab(context, port))
        by_replica: dict[str, list[Page]] = {}
        for page, replica in tabs:
            by_replica.setdefault(replica, []).append(page)
        shared = [pages for pages in by_replica.values() if len(pages) >= 2]
        if shared and len(by_replica) >= 2:
            sender, neighbour = shared[0][:2]
            other = next(pages[0] for pages in by_replica.values() if sender not in pages)
            return sender, neighbour, other
    raise AssertionError(f"7 tabs did not spread over two replicas: {[r for _, r in tabs]}")


def send(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send button")
    expect(page.locator("#messages li.mine .body", has_text=text)).to_have_count(1, timeout=WAIT_MS)


def received(page: Page, text: str):  # type: ignore[no-untyped-def]
    return page.locator("#messages li:not(.mine)", has_text=text)


def delivered_frames(port: int, replica: str) -> int:
    status, body = http_get(port, f"/_lab/{replica}/healthz")
    assert status == 200
    return int(json.loads(body)["delivered_frames"])


def test_without_a_broker_a_message_reaches_only_the_tabs_on_its_own_replica(client, images, tmp_path):
    with stack_of(client, images, "no-broker") as stack, chromium(tmp_path / "profile") as context:
        sender, neighbour, other = tabs_on_two_replicas(context, stack.port)
        origin = sender.locator("#replica").inner_text()
        send(sender, "hello from the first tab")
        expect(received(neighbour, "hello from the first tab")).to_have_count(1, timeout=WAIT_MS)
        line = received(neighbour, "hello from the first tab")
        assert line.get_attribute("data-origin") == origin
        # The neighbour has it: the sender's replica has fanned it out. No broker carries it further.
        assert received(other, "hello from the first tab").count() == 0
        assert delivered_frames(stack.port, other.locator("#replica").inner_text()) == 0


def test_with_pubsub_a_message_reaches_the_tabs_on_every_replica(client, images, tmp_path):
    with stack_of(client, images, "pubsub") as stack, chromium(tmp_path / "profile") as context:
        sender, neighbour, other = tabs_on_two_replicas(context, stack.port)
        origin = sender.locator("#replica").inner_text()
        client_id = sender.evaluate("client")
        send(sender, "hello across replicas")
        for tab in (neighbour, other):
            expect(received(tab, "hello across replicas")).to_have_count(1, timeout=WAIT_MS)
            line = received(tab, "hello across replicas")
            assert (line.get_attribute("data-origin"), line.get_attribute("data-sender")) == (origin, client_id)
        assert other.locator("#replica").inner_text() != origin
        if os.environ.get("WSLAB_SCREENSHOT"):
            send(other, "and back from the other replica")
            expect(received(sender, "and back from the other replica")).to_have_count(1, timeout=WAIT_MS)
            sender.set_viewport_size({"width": 720, "height": 420})
            sender.screenshot(path=os.environ["WSLAB_SCREENSHOT"])
        # a message body is text, never HTML
        send(sender, "<img src=x onerror=\"document.title='owned'\">")
        expect(received(other, "<img src=x")).to_have_count(1, timeout=WAIT_MS)
        assert other.locator("#messages img").count() == 0 and other.title() == "wslab chat"
        # its replica stopped as a deploy stops it (SIGTERM: close 1001): the tabs on it come back by themselves
        # on the others, after the page's backoff, and every tab gets what the sender sends then
        stack.operations().stop(origin, timeout=10)
        for tab in (sender, neighbour):
            expect(tab.locator("#status")).to_contain_text(f"back after a close: {origin} → ", timeout=WAIT_MS)
        now = sender.locator("#replica").inner_text()
        assert now != origin and sender.locator("#replica").get_attribute("data-state") == "open"
        send(sender, "hello after the stop")
        for tab in (neighbour, other):
            expect(received(tab, "hello after the stop")).to_have_count(1, timeout=WAIT_MS)
            assert received(tab, "hello after the stop").get_attribute("data-origin") == now


def test_socketio_page_with_the_redis_manager_crosses_replicas(client, images, tmp_path):
    """The Socket.IO page (the article's events, the vendored client script). The scenario balances by cookie:
    the cookies are cleared before each new tab, so it is placed afresh (an open tab keeps its socket)."""
    with stack_of(client, images, "socketio-redis-manager") as stack, chromium(tmp_path / "profile") as context:
        status, script = http_get(stack.port, "/socket.io.min.js")
        assert status == 200 and b"io" in script[:2000]
        pages = [open_tab(context, stack.port)]
        for _ in range(4):  # without a cookie, round-robin places the tab on the next replica
            context.clear_cookies()
            page, replica = open_tab(context, stack.port)
            if replica != pages[0][1]:
                pages.append((page, replica))
                break
        assert len(pages) == 2, "four more tabs all landed on the first tab's replica"
        (sender, origin), (other, elsewhere) = pages
        sender.fill("#text", "hello through socket.io")
        sender.click("#send button")
        # the article's server sends the message to the whole room, the sender included
        expect(sender.locator("#messages li.mine", has_text="hello through socket.io")).to_have_count(1,
                                                                                               timeout=WAIT_MS)
        expect(received(other, "hello through socket.io")).to_have_count(1, timeout=WAIT_MS)
        assert received(other, "hello through socket.io").get_attribute("data-origin") == origin != elsewhere
