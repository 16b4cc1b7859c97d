"""The vendored socket.io client is pinned by the Node clients' lockfile; the app image's tag follows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labs.errors import ImageError
from labs.infra.images import app_tag
from labs.infra.npm import NpmPin, npm_pin

LOCK = json.dumps({"lockfileVersion": 3, "packages": {
    "": {"dependencies": {"socket.io-client": "^4.8.1"}},
    "node_modules/socket.io-client": {"version": "4.8.4", "integrity": "sha512-7wjKAvVXYOJsbmUg==", "license": "MIT"},
}})


def test_the_pin_is_read_from_the_lock() -> None:
    assert npm_pin(LOCK, "socket.io-client") == NpmPin("socket.io-client", "4.8.4", "sha512-7wjKAvVXYOJsbmUg==")


@pytest.mark.parametrize("lock, match", [
    (json.dumps({"packages": {}}), "pins no socket.io-client"),
    ("not json", "pins no socket.io-client"),
    (LOCK.replace("sha512-", "sha1-"), "unexpected version"),
    (LOCK.replace('"4.8.4"', '"../../4"'), "unexpected version"),
])
def test_a_lock_without_a_usable_pin_is_one_line(lock: str, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        npm_pin(lock, "socket.io-client")


def test_the_app_tag_changes_with_what_is_vendored(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "requirements.txt").write_text("websockets==1\n")
    tags = {app_tag("base:1", app_dir=tmp_path, package_dir=tmp_path / "none", vendored=v)
            for v in ("", "socket.io-client@4.8.4 sha512-a", "socket.io-client@4.8.5 sha512-b")}
    assert len(tags) == 3
