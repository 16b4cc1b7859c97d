"""The load balancer in front of the replicas, one small adapter per kind: nginx or HAProxy.

An adapter says what the stack needs to run one and what an operation needs to act on it: its container's
name, its image, its command (the config checked first, `nginx -t` or `haproxy -c`, and only then the
server, in the foreground), where its config goes, how it says it rejected that config, the signal that
makes it reload the config (nginx's master: SIGHUP; HAProxy's master-worker: SIGUSR2), and how to ask its
version. Both answer READY_PATH themselves and route `/_lab/<replica>/healthz` to that replica's /healthz.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from ..errors import ImageError
from ..scenario import Balancer
from .images import Image, ImageSet

#: answered 200 by the balancer itself: it is up and serving (both templates render it)
READY_PATH = "/_lab/lb"
#: the port the balancer listens on in its container (above 1024: no capability needed)
LISTEN_PORT = 8080


@dataclass(frozen=True)
class BalancerAdapter:
    kind: Balancer
    #: the container's name (its role), and the file its rendered config is written to
    name: str
    config_path: str
    #: the program's own check of a config (`<check> <config_path>` exits non-zero when it rejects it)
    check: tuple[str, ...]
    #: the server, in the foreground, as the container's main process
    serve: tuple[str, ...]
    #: what marks a line of its log as its own words about a rejected config
    alert: str
    #: the signal its main process reloads the config on (the config at config_path rewritten first)
    reload_signal: str
    #: prints its version; `version_re` finds it in what that printed
    version_command: tuple[str, ...]
    version_re: str
    #: serving is not yet taking a reload: the stack waits, once it serves, until the main process catches
    #: the reload signal (HAProxy's master re-executes itself after its first load, and a signal that comes
    #: before the new image installed its handler is lost: the container's PID 1 ignores what it has no
    #: handler for)
    await_reloadable: bool = False

    def command(self) -> list[str]:
        """Check the config, and only then serve it (exec: the server is the container's main process)."""
        check = " ".join((*self.check, self.config_path))
        return ["sh", "-c", f"{check} && exec {' '.join((*self.serve, self.config_path))}"]

    def image(self, images: ImageSet) -> Image:
        if self.kind is Balancer.NGINX:
            return images.nginx
        if images.haproxy is None:
            raise ImageError(f"the haproxy image is missing ({images.haproxy_error or 'not built'}); run `make images`")
        return images.haproxy

    def rejected(self, log: str) -> str | None:
        """One line with the balancer's own words when its log says it rejected the config; else None."""
        words = [line for line in log.splitlines() if self.alert in line]
        if not words:
            return None
        said = re.sub(rf"^.*?{re.escape(self.alert)}\s*(\(\d+\)\s*:\s*)?", "", words[0]).strip()
        return f"{self.name} rejected the rendered config ({' '.join(self.check[:2])}): {said}"

    def catches_reload(self, status: str) -> bool:
        """Whether a process whose /proc/<pid>/status is `status` has a handler for the reload signal."""
        match = re.search(r"^SigCgt:\s*([0-9a-fA-F]+)$", status, re.MULTILINE)
        return match is not None and bool(int(match.group(1), 16) >> (signal.Signals[self.reload_signal] - 1) & 1)

    def version(self, text: str) -> str:
        match = re.search(self.version_re, text)
        return match.group(1) if match else text.strip()[:80]


NGINX_CONF = "/etc/wslab/nginx.conf"
HAPROXY_CFG = "/etc/wslab/haproxy.cfg"

NGINX = BalancerAdapter(
    kind=Balancer.NGINX, name="nginx", config_path=NGINX_CONF,
    check=("nginx", "-t", "-q", "-e", "stderr", "-c"), serve=("nginx", "-e", "stderr", "-g", "'daemon off;'", "-c"),
    alert="[emerg]", reload_signal="SIGHUP", version_command=("nginx", "-v"), version_re=r"nginx version: (\S+)")
# -W: master-worker (the master re-reads the config and starts new workers on SIGUSR2, the old ones stop
# softly); -db: in the foreground, logging to stdout/stderr
HAPROXY = BalancerAdapter(
    kind=Balancer.HAPROXY, name="haproxy", config_path=HAPROXY_CFG,
    check=("haproxy", "-c", "-f"), serve=("haproxy", "-W", "-db", "-f"),
    alert="[ALERT]", reload_signal="SIGUSR2", version_command=("haproxy", "-v"), version_re=r"HAProxy version (\S+)",
    await_reloadable=True)

ADAPTERS = {adapter.kind: adapter for adapter in (NGINX, HAPROXY)}
#: every balancer's container name (what a node fault finds on its node)
NAMES = frozenset(adapter.name for adapter in ADAPTERS.values())


def adapter(kind: Balancer) -> BalancerAdapter:
    return ADAPTERS[kind]
