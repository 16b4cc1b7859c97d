"""Debian packages for an image, fetched by the host: which of them (and of their dependencies) an image
lacks, asked of the host's apt against the image's own dpkg status; then those .deb files, downloaded once
with `apt-get download` and kept under build/debs/. Nothing is fetched inside a build (TLS to registries
fails in containers on the machine the lab was built on; the .debs go into the build context instead).
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import docker
import docker.errors

from ..errors import ImageError
from ..settings import BUILD_DIR, LABEL, OWNER, OWNER_LABEL

DEBS_DIR = BUILD_DIR / "debs"
DPKG_STATUS = "/var/lib/dpkg/status"
#: `apt-get -s` says what it would install as `Inst <name> (<version> <release> [<arch>])`
_INST = re.compile(r"^Inst (\S+) \((\S+) ", re.MULTILINE)
#: a package name and version as Debian allows them: nothing that could leave an argument
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^[0-9A-Za-z.+~:-]+$")


class Pin(NamedTuple):
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}={self.version}"


def parse_simulation(text: str) -> list[Pin]:
    """The packages `apt-get -s install` would install, sorted, from its output."""
    pins = sorted({Pin(name, version) for name, version in _INST.findall(text)})
    for pin in pins:
        if not _NAME.fullmatch(pin.name) or not _VERSION.fullmatch(pin.version):
            raise ImageError(f"apt-get named a package this lab will not pass on: {pin.name!r} {pin.version!r}")
    return pins


def image_status(client: docker.DockerClient, image: str) -> str:
    """The image's dpkg status file (what is installed in it), read from a created, never started, labelled
    container that is removed on every path."""
    run_id = f"debs-{secrets.token_hex(3)}"
    container = client.containers.create(image, ["true"], name=f"wslab-{run_id}-dpkg-status", network_disabled=True,
                                         labels={LABEL: run_id, OWNER_LABEL: OWNER, "wslab.role": "probe"})
    try:
        stream, _ = container.get_archive(DPKG_STATUS)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("status")
            if member is None:
                raise ImageError(f"{image} has no {DPKG_STATUS}")
            return member.read().decode(errors="replace")
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def needed(client: docker.DockerClient, image: str, packages: tuple[str, ...]) -> list[Pin]:
    """What `image` lacks for `packages` (`missing`), asked of apt once per image id, then read from build/."""
    cached = DEBS_DIR / f"pins-{client.images.get(image).id.replace(':', '-')}-{'-'.join(packages)}.txt"
    if cached.is_file():
        return [Pin(*line.split("=", 1)) for line in cached.read_text().split()]
    pins = missing(image_status(client, image), packages)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.partial")
    partial.write_text("".join(f"{pin}\n" for pin in pins))
    partial.rename(cached)
    return pins


def _apt(args: list[str], *, cwd: Path | None = None) -> str:
    if shutil.which("apt-get") is None:
        raise ImageError("apt-get not found: the HAProxy image is built from Debian packages the host fetches "
                         "(run on a Debian-family host)")
    done = subprocess.run(["apt-get", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " / ".join(done.stderr.strip().splitlines()[-3:])
        raise ImageError(f"apt-get {args[-1]} failed (exit {done.returncode}): {tail}")
    return done.stdout


def missing(status: str, packages: tuple[str, ...]) -> list[Pin]:
    """What installing `packages` on an image with this dpkg `status` needs: the packages and whichever of
    their dependencies it lacks, at the versions the host's apt would pick (no recommends)."""
    with tempfile.TemporaryDirectory(prefix="dpkg-", dir=_scratch()) as work:
        path = Path(work) / "status"
        path.write_text(status)
        text = _apt(["-s", "-o", f"Dir::State::status={path}", "install", "--no-install-recommends", *packages])
    pins = parse_simulation(text)
    if not {p.name for p in pins} >= set(packages):
        raise ImageError(f"apt-get would not install {', '.join(packages)} (already in the image, or unknown)")
    return pins


def download(pins: list[Pin], progress: Callable[[str], None]) -> Path:
    """A directory holding exactly these .deb files, downloaded by the host's apt once per set of pins."""
    target = DEBS_DIR / "-".join(sorted({p.name for p in pins}))[:60] / _digest(pins)
    if target.is_dir():
        return target
    progress(f"downloading {', '.join(map(str, pins))} …")

    def fill(partial: Path) -> None:
        # apt's sandbox user may not write here (build/ belongs to whoever runs the lab): download as we are
        _apt(["-q", "-o", "APT::Sandbox::User=root", "download", *map(str, pins)], cwd=partial)
        found = {p.name.split("_", 1)[0] for p in partial.glob("*.deb")}
        if found != {p.name for p in pins}:
            raise ImageError(f"apt-get download left {sorted(found)}, not {[p.name for p in pins]}")

    return fetch_once(target, fill)


def fetch_once(target: Path, fill: Callable[[Path], None]) -> Path:
    """`target`, filled by `fill` in a scratch directory beside it and renamed into place only when complete:
    a fetch cut short leaves nothing a later run would take for done."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="partial-", dir=target.parent))
    try:
        fill(partial)
        partial.chmod(0o755)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _digest(pins: list[Pin]) -> str:
    return hashlib.sha256("\n".join(map(str, pins)).encode()).hexdigest()[:10]


def _scratch() -> Path:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return BUILD_DIR
