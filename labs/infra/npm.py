"""npm on the host (TLS to registries fails inside containers).

A browser script vendored into the app image from an npm package: the socket.io client the Socket.IO chat
page loads. The version and integrity come from tests/node/package-lock.json (the Node clients' pin); the
tarball is fetched on the host, checked against the integrity, and cached under build/npm/, so a second
build fetches nothing. And `npm ci` for the seed-node image's packages (images/node/package-lock.json).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import requests

from ..errors import ImageError
from ..settings import BUILD_DIR, ROOT

NPM_LOCK = ROOT / "tests" / "node" / "package-lock.json"
CLIENT_PACKAGE = "socket.io-client"
CLIENT_FILE = "dist/socket.io.min.js"
NPM_REGISTRY = "https://registry.npmjs.org"


class NpmPin(NamedTuple):
    name: str
    version: str
    #: the lock's Subresource Integrity string, "sha512-<base64>"
    integrity: str


def npm_pin(lock_text: str, name: str) -> NpmPin:
    """The version and integrity `name` is pinned to in an npm lockfile (v2/v3)."""
    try:
        entry = json.loads(lock_text)["packages"][f"node_modules/{name}"]
        pin = NpmPin(name, str(entry["version"]), str(entry["integrity"]))
    except (ValueError, KeyError, TypeError):
        raise ImageError(f"{NPM_LOCK.relative_to(ROOT)} pins no {name} with a version and an integrity; "
                         f"run `npm install --prefix tests/node {name}`") from None
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", pin.version) or not pin.integrity.startswith("sha512-"):
        raise ImageError(f"{name} in {NPM_LOCK.relative_to(ROOT)}: unexpected version {pin.version!r} or integrity")
    return pin


def client_script(pin: NpmPin, progress: Callable[[str], None]) -> Path:
    """The pinned socket.io-client's browser build, fetched once on the host (TLS to registries fails inside
    containers) from the npm registry, checked against the lock's integrity, cached under build/npm/."""
    target = BUILD_DIR / "npm" / f"{pin.name}-{pin.version}" / Path(CLIENT_FILE).name
    if target.is_file():
        return target
    url = f"{NPM_REGISTRY}/{pin.name}/-/{pin.name}-{pin.version}.tgz"
    progress(f"downloading {url} …")
    try:
        response = requests.get(url, timeout=60)
        response.raise_for_status()
    except requests.exceptions.RequestException as exc:
        raise ImageError(f"cannot download {url}: {exc}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(response.content).digest()).decode()
    if digest != pin.integrity:
        raise ImageError(f"{url} does not match the lock's integrity {pin.integrity}")
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        member = tar.extractfile(f"package/{CLIENT_FILE}")
        if member is None:
            raise ImageError(f"{url} has no {CLIENT_FILE}")
        data = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.rename(target)
    return target


def npm_ci(package_dir: Path, progress: Callable[[str], None]) -> None:
    """`npm ci` in `package_dir` on the host: exactly the packages its package-lock.json pins, without their
    install scripts or dev dependencies, into `package_dir`/node_modules."""
    npm = shutil.which("npm")
    if npm is None:
        raise ImageError("npm not found on the host: the seed-node image's packages are installed with "
                         "`npm ci` here; install Node 18+ with npm")
    progress(f"npm ci in {package_dir} …")
    done = subprocess.run([npm, "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
                          cwd=package_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise ImageError(f"npm ci failed (exit {done.returncode}) in {package_dir}: {tail}")
