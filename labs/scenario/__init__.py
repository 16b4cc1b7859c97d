"""A scenario: the model (enums and frozen dataclasses), its brokers and kinds of fault, how a TOML file
becomes one (parse), and what it declares about its outcome (expect). Everything else imports scenarios from
here."""

from .brokers import Broker, BrokerFacts, unfit
from .expect import (
    CLUSTER_ONLY,
    SEED_NODE_WS_METRICS,
    SOCKETIO_METRICS,
    SOCKETIO_ONLY,
    WEBSOCKET_ONLY,
    Bound,
    Metric,
)
from .faults import TOPOLOGY_CHANGES, FaultKind
from .model import (
    ALL_REPLICAS,
    MAX_DELIVERIES,
    MAX_FAULTS,
    MAX_MASTERS,
    MAX_RECOVERY_S,
    MAX_REPLICAS,
    MAX_ROOMS,
    MAX_SEND_DURATION_S,
    MAX_SENDS,
    MAX_SHUTDOWN_TIMEOUT_S,
    MAX_SOFT_STOP_S,
    MAX_STEP_PAUSE_S,
    MIN_MASTERS,
    AppKind,
    Balance,
    Balancer,
    Events,
    Fault,
    Scenario,
    Swarm,
    Topology,
    Transport,
    Workload,
)
from .parse import NODE_BROKERS, available, load, on_swarm, parse

__all__ = [
    "ALL_REPLICAS", "TOPOLOGY_CHANGES",
    "CLUSTER_ONLY", "MAX_DELIVERIES", "MAX_FAULTS", "MAX_MASTERS", "MAX_RECOVERY_S", "MAX_REPLICAS", "MAX_ROOMS",
    "MAX_SENDS", "MAX_SEND_DURATION_S", "MAX_SHUTDOWN_TIMEOUT_S", "MAX_SOFT_STOP_S",
    "MAX_STEP_PAUSE_S", "MIN_MASTERS", "NODE_BROKERS", "SEED_NODE_WS_METRICS", "SOCKETIO_METRICS",
    "SOCKETIO_ONLY", "WEBSOCKET_ONLY", "AppKind", "Balance", "Balancer", "Bound", "Broker", "BrokerFacts", "Events", "Fault",
    "FaultKind", "Metric", "Scenario", "Swarm", "Topology", "Transport", "Workload", "available", "load", "on_swarm",
    "parse", "unfit",
]
