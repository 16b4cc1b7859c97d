"""The images a run needs: app, redis, nginx (and node for the seed article's Node servers, haproxy for the
scenarios that balance with HAProxy) — used from the local store, pulled, or built here.

No registry may be reachable, so everything can be built offline from the host's apt mirror:
a Debian base (debootstrap) with python3, nginx, redis-server and nats-server, and the app image on top of it
with wheels downloaded by the host's pip, and the node image on it with Debian's nodejs and the npm packages
`npm ci` installed on the host (images/node/), and the haproxy image on it with Debian's haproxy from .deb
files the host's apt downloads (`debs`, images/haproxy/). All are tagged by a hash of their inputs, so a present
tag means "already built" and nothing is rebuilt.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import docker
import requests

from ..errors import ImageError
from ..settings import BUILD_DIR, QUIET, ROOT
from . import debs
from .engine import apt_install, debian_root, read_os_release
from .npm import CLIENT_FILE, CLIENT_PACKAGE, NPM_LOCK, client_script, npm_ci, npm_pin

#: bump when the way images are made changes, so old tags are not reused
FORMAT = 2
BASE_REPO = "wslab/base"
APP_REPO = "wslab/app"
BASE_PACKAGES = ("python3", "python3-venv", "nginx", "redis-server", "nats-server")
REDIS_OFFICIAL = "redis:7"
NGINX_OFFICIAL = "nginx:1.27"
APP_DIR = ROOT / "images" / "app"
APP_PACKAGE = ROOT / "labs" / "app"
NODE_REPO = "wslab/node"
#: the seed article's Node servers: their Dockerfile, package.json and package-lock.json, and the .mjs files
NODE_DIR = ROOT / "images" / "node"
HAPROXY_REPO = "wslab/haproxy"
HAPROXY_DIR = ROOT / "images" / "haproxy"
#: what the haproxy image adds to the base (with whichever of their dependencies the base lacks)
HAPROXY_PACKAGES = ("haproxy",)
IMAGE_LABEL = "wslab.image"
#: label on the base image: its python3's major.minor, which the app's wheels must match
PYTHON_LABEL = "wslab.python"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PULL_ERRORS = (docker.errors.APIError, requests.exceptions.RequestException)


@dataclass(frozen=True)
class Image:
    """An image that exists in the local store, and how it got there."""

    tag: str
    #: where it came from, for the run's report, e.g. "official redis:7 (present locally)"
    source: str


@dataclass(frozen=True)
class ImageSet:
    """The images of one run. redis and nginx may be the Debian base image when the official ones are
    unavailable: Debian's redis-server then needs `--protected-mode no` (or a config) to accept other
    containers, and Debian's nginx has its own default config, so callers should pass theirs."""

    app: Image
    redis: Image
    nginx: Image
    #: the seed article's Node servers (None when it could not be built: `node_error` says why; only the
    #: seed-node scenarios need it, so the others still run)
    node: Image | None = None
    node_error: str = ""
    #: Debian's nats-server (the base image has it); None in sets made before it was there
    nats: Image | None = None
    #: Debian's HAProxy on the base (None when it could not be built: `haproxy_error` says why; only the
    #: scenarios with balancer = "haproxy" need it)
    haproxy: Image | None = None
    haproxy_error: str = ""


class Mirror(NamedTuple):
    """An apt repository debootstrap can fetch the host's release from."""

    uri: str
    components: tuple[str, ...]


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if match:
            kind, uri, suite, components = match.groups()
            yield [kind], [uri], [suite], components.split()


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield (fields.get("types", "").split(), fields.get("uris", "").split(),
               fields.get("suites", "").split(), fields.get("components", "").split())


def pick_mirror(files: Sequence[tuple[str, str]], codename: str) -> Mirror | None:
    """The first apt source (files as (name, text), in apt's order) serving suite `codename` with `main`.

    Names ending in .sources are deb822, all others one-line format; -updates/-security suites never match.
    """
    for name, text in files:
        entries = _deb822_entries(text) if name.endswith(".sources") else _one_line_entries(text)
        for types, uris, suites, components in entries:
            if "deb" not in types or codename not in suites or "main" not in components:
                continue
            for uri in uris:
                if uri.startswith(("http://", "https://", "file:/")):
                    return Mirror(uri, tuple(components))
    return None


def read_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """sources.list and sources.list.d/*.list|*.sources as (name, text), in the order apt reads them."""
    paths = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        paths += sorted(p for p in parts.iterdir() if p.suffix in {".list", ".sources"})
    return [(p.name, p.read_text(errors="replace")) for p in paths if p.is_file()]


def _short_hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:10]


def base_tag(suite: str) -> str:
    """The base image's tag: a hash of everything debootstrap is given."""
    return f"{BASE_REPO}:{_short_hash(str(FORMAT).encode(), suite.encode(), ','.join(BASE_PACKAGES).encode())}"


def _package_files(package_dir: Path) -> list[Path]:
    return sorted(
        p for p in package_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def app_tag(base: str, *, app_dir: Path = APP_DIR, package_dir: Path = APP_PACKAGE, vendored: str = "") -> str:
    """The app image's tag: a hash of its base, its Dockerfile and requirements, the app package, and what
    is vendored into it (the pinned npm package's integrity)."""
    parts = [str(FORMAT).encode(), base.encode(),
             (app_dir / "Dockerfile").read_bytes(), (app_dir / "requirements.txt").read_bytes(), vendored.encode()]
    if package_dir.is_dir():
        for path in _package_files(package_dir):
            parts += [path.relative_to(package_dir).as_posix().encode(), path.read_bytes()]
    return f"{APP_REPO}:{_short_hash(*parts)}"


def node_files(node_dir: Path = NODE_DIR) -> list[Path]:
    """What goes into the node image from `node_dir`: every file but an installed node_modules."""
    return sorted(p for p in node_dir.rglob("*") if p.is_file() and "node_modules" not in p.relative_to(node_dir).parts)


def node_tag(base: str, *, node_dir: Path = NODE_DIR) -> str:
    """The node image's tag: a hash of its base and of every file in `node_dir` (Dockerfile, package.json,
    package-lock.json, the servers), so a changed lock or server builds a new image."""
    parts = [str(FORMAT).encode(), base.encode()]
    for path in node_files(node_dir):
        parts += [path.relative_to(node_dir).as_posix().encode(), path.read_bytes()]
    return f"{NODE_REPO}:{_short_hash(*parts)}"


def haproxy_tag(base: str, pins: list[debs.Pin], *, haproxy_dir: Path = HAPROXY_DIR) -> str:
    """The haproxy image's tag: a hash of its base, its Dockerfile and the exact packages it installs."""
    parts = [str(FORMAT).encode(), base.encode(), (haproxy_dir / "Dockerfile").read_bytes(),
             "\n".join(map(str, pins)).encode()]
    return f"{HAPROXY_REPO}:{_short_hash(*parts)}"


def _present(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _tail(text: str, lines: int = 5) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])


def _remove_tree(path: Path) -> None:
    """rmtree that first unmounts anything an interrupted debootstrap left mounted (proc, sys) inside."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _rootfs_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if re.match(r"^(dev|proc|sys)/", info.name):
        return None
    info.uname = info.gname = ""
    return info


def _build_base(client: docker.DockerClient, tag: str, suite: str, progress: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        if not debian_root():
            raise ImageError(f"{tag} must be built with debootstrap; run as root on a Debian-family host")
        apt_install(["debootstrap"], progress=progress, error=ImageError)
    elif os.geteuid() != 0:
        raise ImageError(f"{tag} must be built with debootstrap, which needs root; run as root once")
    mirror = pick_mirror(read_apt_sources(), suite)
    if mirror is None:
        raise ImageError(f"no apt source of this host serves suite {suite} with component main; add one to /etc/apt/sources.list")

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="base-", dir=BUILD_DIR))
    log_path = BUILD_DIR / "debootstrap.log"
    try:
        rootfs = work / "rootfs"
        progress(f"debootstrap {suite} minbase from {mirror.uri} (log: {log_path}) …")
        with open(log_path, "w") as log:
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--components={','.join(mirror.components)}",
                 f"--include={','.join(BASE_PACKAGES)}", suite, str(rootfs), mirror.uri],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            raise ImageError(f"debootstrap failed (exit {done.returncode}); see {log_path}: {_tail(log_path.read_text(errors='replace'))}")
        for junk in [*(rootfs / "var/cache/apt/archives").glob("*.deb"), *(rootfs / "var/lib/apt/lists").glob("*")]:
            if junk.is_dir():
                shutil.rmtree(junk)
            else:
                junk.unlink()

        python = os.readlink(rootfs / "usr/bin/python3").removeprefix("python")
        progress(f"importing the root filesystem as {tag} …")
        archive = work / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name, filter=_rootfs_filter)
        repository, _, version = tag.partition(":")
        result = client.api.import_image_from_file(
            str(archive), repository=repository, tag=version,
            changes=[f"ENV PATH={DEFAULT_PATH}", f"LABEL {IMAGE_LABEL}=base {PYTHON_LABEL}={python}"],
        )
        if '"error"' in result or not _present(client, tag):
            raise ImageError(f"importing {tag} failed: {_tail(result, 2)}")
    finally:
        _remove_tree(work)


def _ensure_base(client: docker.DockerClient, progress: Callable[[str], None]) -> Image:
    suite = read_os_release().get("VERSION_CODENAME")
    if not suite:
        raise ImageError("the base image is built from this host's Debian release, but /etc/os-release names no VERSION_CODENAME")
    tag = base_tag(suite)
    what = f"built locally: debootstrap {suite} minbase"
    if _present(client, tag):
        return Image(tag, f"{what} (cached)")
    started = time.monotonic()
    _build_base(client, tag, suite, progress)
    took = time.monotonic() - started
    progress(f"built {tag} in {took:.1f} s")
    return Image(tag, f"{what} (built now, {took:.1f} s)")


def _wheels(requirements: Path, python: str | None, progress: Callable[[str], None]) -> Path:
    """A directory of the wheels `requirements` needs for the image's `python` (major.minor),
    downloaded by the host's pip once per requirements text and version."""
    target = BUILD_DIR / "wheels" / _short_hash(requirements.read_bytes(), str(python).encode())
    if target.is_dir():
        return target
    progress(f"downloading wheels for {requirements.relative_to(ROOT)} …")

    def fill(partial: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", *(["--python-version", python] if python else []),
             "-d", str(partial), "-r", str(requirements)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise ImageError(f"pip download failed (exit {done.returncode}): {_tail(done.stderr, 3)}")

    return debs.fetch_once(target, fill)


def _docker_build(client: docker.DockerClient, context: Path, tag: str, base: str,
                  progress: Callable[[str], None], *, role: str = "app") -> None:
    step_output: list[str] = []
    try:
        for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                      buildargs={"BASE": base}, labels={IMAGE_LABEL: role}):
            if "error" in chunk:
                failing = "\n".join(step_output[-20:])
                raise ImageError(f"building {tag} failed: {chunk['error'].strip()}\n{failing}")
            for line in _ANSI.sub("", chunk.get("stream", "")).splitlines():
                if not line.strip():
                    continue
                if line.startswith("Step "):
                    step_output = []
                step_output.append(line)
                if not QUIET:
                    progress(f"  {line}")
    except docker.errors.APIError as exc:
        raise ImageError(f"building {tag} failed: {exc.explanation or exc}") from exc


def _ensure_app(client: docker.DockerClient, base: Image, progress: Callable[[str], None]) -> Image:
    pin = npm_pin(NPM_LOCK.read_text(), CLIENT_PACKAGE)
    tag = app_tag(base.tag, app_dir=APP_DIR, package_dir=APP_PACKAGE, vendored=f"{pin.name}@{pin.version} {pin.integrity}")
    what = f"built locally on {base.tag}"
    if _present(client, tag):
        return Image(tag, f"{what} (cached)")
    started = time.monotonic()
    python = client.images.get(base.tag).labels.get(PYTHON_LABEL)
    wheels = _wheels(APP_DIR / "requirements.txt", python, progress)
    context = Path(tempfile.mkdtemp(prefix="app-", dir=BUILD_DIR))
    try:
        shutil.copy2(APP_DIR / "Dockerfile", context / "Dockerfile")
        shutil.copy2(APP_DIR / "requirements.txt", context / "requirements.txt")
        shutil.copytree(wheels, context / "wheels")
        package = context / "wslab_app"
        package.mkdir()
        if APP_PACKAGE.is_dir():
            for path in _package_files(APP_PACKAGE):
                (package / path.relative_to(APP_PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, package / path.relative_to(APP_PACKAGE))
        shutil.copy2(client_script(pin, progress), package / Path(CLIENT_FILE).name)
        progress(f"building {tag} …")
        _docker_build(client, context, tag, base.tag, progress)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Image(tag, f"{what} (built now, {time.monotonic() - started:.1f} s)")


def _ensure_node(client: docker.DockerClient, base: Image, progress: Callable[[str], None]) -> Image:
    """The node image: Debian's nodejs (apt inside the build, from the base's Debian mirror over plain HTTP)
    and node_modules from `npm ci` on the host, in a fresh build context under build/."""
    tag = node_tag(base.tag)
    what = f"built locally on {base.tag}: Debian nodejs, npm ci from images/node/package-lock.json"
    if _present(client, tag):
        return Image(tag, f"{what} (cached)")
    started = time.monotonic()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix="node-", dir=BUILD_DIR))
    try:
        for path in node_files():
            (context / path.relative_to(NODE_DIR)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / path.relative_to(NODE_DIR))
        npm_ci(context, progress)
        progress(f"building {tag} …")
        _docker_build(client, context, tag, base.tag, progress, role="node")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Image(tag, f"{what} (built now, {time.monotonic() - started:.1f} s)")


def _ensure_haproxy(client: docker.DockerClient, base: Image, progress: Callable[[str], None]) -> Image:
    """The haproxy image: Debian's haproxy and the dependencies the base lacks, as .deb files the host's apt
    downloaded into a fresh build context under build/, installed with dpkg."""
    pins = debs.needed(client, base.tag, HAPROXY_PACKAGES)
    tag = haproxy_tag(base.tag, pins)
    packages = ", ".join(f"{p.name} {p.version}" for p in pins)
    what = f"built locally on {base.tag}: Debian {packages} (.debs from the host's apt)"
    if _present(client, tag):
        return Image(tag, f"{what} (cached)")
    started = time.monotonic()
    found = debs.download(pins, progress)
    context = Path(tempfile.mkdtemp(prefix="haproxy-", dir=BUILD_DIR))
    try:
        shutil.copy2(HAPROXY_DIR / "Dockerfile", context / "Dockerfile")
        shutil.copytree(found, context / "debs")
        progress(f"building {tag} …")
        _docker_build(client, context, tag, base.tag, progress, role="haproxy")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Image(tag, f"{what} (built now, {time.monotonic() - started:.1f} s)")


def _ensure_official(client: docker.DockerClient, ref: str, package: str, fallback: Image,
                     progress: Callable[[str], None]) -> Image:
    """The official image `ref` if present or pullable, else the base image, which has Debian's `package`."""
    if _present(client, ref):
        return Image(ref, f"official {ref} (present locally)")
    progress(f"pulling {ref} …")
    repository, _, version = ref.partition(":")
    try:
        client.images.pull(repository, tag=version)
        return Image(ref, f"official {ref} (pulled)")
    except _PULL_ERRORS as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        progress(f"pulling {ref} failed: {reason.splitlines()[0][:160]}")
    return Image(fallback.tag, f"Debian {package} in {fallback.tag} (official {ref} absent, pull failed)")


def ensure_images(client: docker.DockerClient, *, progress: Callable[[str], None]) -> ImageSet:
    """Make sure the app, redis, nginx, node and haproxy images exist, building or pulling only what is missing."""
    base = _ensure_base(client, progress)
    app = _ensure_app(client, base, progress)
    redis = _ensure_official(client, REDIS_OFFICIAL, "redis-server", base, progress)
    nginx = _ensure_official(client, NGINX_OFFICIAL, "nginx", base, progress)
    try:
        node, node_error = _ensure_node(client, base, progress), ""
    except ImageError as exc:
        node, node_error = None, str(exc)
        progress(f"the node image was not built, so the seed-node scenarios cannot run: {exc}")
    try:
        haproxy, haproxy_error = _ensure_haproxy(client, base, progress), ""
    except ImageError as exc:
        haproxy, haproxy_error = None, str(exc)
        progress(f"the haproxy image was not built, so the scenarios with balancer = \"haproxy\" cannot run: {exc}")
    nats = Image(base.tag, f"Debian nats-server in {base.tag}")
    return ImageSet(app=app, redis=redis, nginx=nginx, node=node, node_error=node_error, nats=nats,
                    haproxy=haproxy, haproxy_error=haproxy_error)
