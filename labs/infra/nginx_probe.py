"""Which nginx an image holds: `nginx -v` in a throwaway container, remembered per image id.

The rendered config depends on it (native `sticky cookie` exists in open source only since 1.29.6). The
container is labelled like every lab resource, has no network, and is removed on every path.
"""

from __future__ import annotations

import secrets

import docker
import docker.errors

from ..errors import StackError
from ..settings import BUILD_DIR, LABEL, OWNER, OWNER_LABEL
from .render import RenderError, parse_nginx_version
from .stack import UNPRIVILEGED

CACHE_DIR = BUILD_DIR / "nginx-version"
_memo: dict[str, tuple[int, int, int]] = {}


def nginx_version(client: docker.DockerClient, image: str, *, timeout: float = 30.0) -> tuple[int, int, int]:
    """(major, minor, patch) of the nginx in `image`; asked once per image id, then read from build/."""
    try:
        image_id = client.images.get(image).id.replace(":", "-")
    except docker.errors.ImageNotFound:
        raise StackError(f"image {image} not found; run `make images`") from None
    if image_id in _memo:
        return _memo[image_id]
    cached = CACHE_DIR / image_id
    if cached.is_file():
        try:
            _memo[image_id] = parse_nginx_version(cached.read_text())
            return _memo[image_id]
        except RenderError:
            cached.unlink()
    text = _ask(client, image, timeout)
    version = parse_nginx_version(text)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.partial")
    partial.write_text(text)
    partial.rename(cached)
    _memo[image_id] = version
    return version


def _ask(client: docker.DockerClient, image: str, timeout: float) -> str:
    run_id = f"probe-{secrets.token_hex(3)}"
    container = client.containers.create(
        image, ["nginx", "-v"], name=f"wslab-{run_id}-nginx-version", labels={LABEL: run_id, OWNER_LABEL: OWNER, "wslab.role": "probe"},
        network_disabled=True, detach=True, **UNPRIVILEGED)
    try:
        container.start()
        status = container.wait(timeout=timeout)
        # `nginx -v` writes to stderr
        text: str = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if status.get("StatusCode") != 0:
            raise StackError(f"`nginx -v` in {image} exited with {status.get('StatusCode')}: {text.strip()[:200]}")
        return text
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
