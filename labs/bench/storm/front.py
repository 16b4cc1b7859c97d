"""The balancer in front of the storm: nginx (sized by the connection bench's layout) or HAProxy, one adapter
each (labs.infra.balancers), with the two knobs that decide where a reconnect goes while a replica is dead:
how long the balancer tries a replica before the next one, and (nginx) after how many failures it leaves one
out. A front that cannot carry N here is a PlanError (one line, nothing started)."""

from __future__ import annotations

from dataclasses import dataclass

from ...infra.balancers import ADAPTERS, BalancerAdapter
from ...infra.render import Upstream
from ...infra.render_haproxy import HaproxyConfig, render_haproxy
from ...infra.sizing import FILES_PER_CONNECTION, HAPROXY_MAXCONN_SPARE, haproxy_most
from ...scenario import Balancer
from ..connections.plan import Layout, PlanError, Via
from ..connections.run import nginx_config


@dataclass(frozen=True)
class Front:
    adapter: BalancerAdapter
    config: str

    @property
    def name(self) -> str:
        """Its container's name in the stack."""
        return self.adapter.name


def front_for(balancer: Balancer, layout: Layout, *, upstream_timeout_ms: int, max_fails: int | None) -> Front:
    """The balancer's adapter and its rendered config for `layout`'s N clients."""
    if balancer is Balancer.NGINX:
        return Front(ADAPTERS[balancer], nginx_config(layout, connect_timeout_ms=upstream_timeout_ms,
                                                      max_fails=max_fails or 0))
    if max_fails is not None:
        raise PlanError("--max-fails is nginx's; HAProxy here retries a failed connect once on another replica "
                        "(`retries 1`, `option redispatch`) and never leaves a replica out")
    if layout.via is not Via.BRIDGE:
        raise PlanError("--balancer haproxy listens on one port: give --via bridge")
    most = haproxy_most(layout.fd_limit)
    if layout.connections > most:
        raise PlanError(f"N={layout.connections}: HAProxy is one process, and {layout.connections} proxied "
                        f"WebSockets need ~{FILES_PER_CONNECTION['haproxy'] * layout.connections:,} open files; one "
                        f"process holds {layout.fd_limit:,} here: give N <= {most}")
    config = HaproxyConfig(tuple(Upstream(f"app-{i}", f"app-{i}", 8000) for i in range(1, layout.replicas + 1)),
                           connect_timeout_ms=upstream_timeout_ms, threads=layout.nginx_workers,
                           maxconn=layout.connections + HAPROXY_MAXCONN_SPARE)
    return Front(ADAPTERS[balancer], render_haproxy(config))
