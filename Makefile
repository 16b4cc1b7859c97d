# wslab — `make help` lists the targets.
PY      ?= python3
VENV    := .venv
PYTHON  := $(VENV)/bin/python
LAB     := $(PYTHON) -m labs

FAULTS  := $(sort $(basename $(notdir $(wildcard scenarios/fault-*.toml))))
# in the order the story goes: the failure, ip_hash (one /24, then many), hash, cookie, WebSocket-only,
# rooms without and with the Redis manager, the article's own events, then a sticky server killed
STICKY  := sticky-round-robin-polling sticky-ip-hash-polling sticky-ip-hash-subnets sticky-hash-subnets \
           sticky-cookie-polling sticky-websocket-round-robin socketio-no-manager socketio-redis-manager \
           socketio-article-events sticky-cookie-failover

# the seed article's own Node servers: its subscribe('chat:*') bug, the pSubscribe fix, its Socket.IO server
# without and with @socket.io/redis-adapter, then each fault for the adapter beside python-socketio's manager
SEED_NODE := seed-node-glob seed-node-pubsub seed-node-socketio-no-adapter seed-node-socketio \
           seed-node-socketio-restart-redis seed-node-pysio-restart-redis \
           seed-node-socketio-kill-replica seed-node-pysio-kill-replica

# the broker comparison: Redis PubSub, Redis Streams, core NATS, JetStream under the headline workload, then
# under each fault they share (no slow-consumer row for Streams: it has no subscriber to cut off)
BROKERS := pubsub streams nats nats-jetstream \
           fault-pubsub-kill-replica fault-streams-kill-replica fault-nats-kill-replica fault-jetstream-kill-replica \
           fault-pubsub-partition fault-streams-partition fault-nats-partition fault-jetstream-partition \
           fault-pubsub-pause-redis fault-streams-pause-redis fault-nats-pause-broker fault-jetstream-pause-broker \
           fault-pubsub-restart-redis fault-streams-restart-redis fault-nats-restart-broker fault-jetstream-restart-broker \
           fault-pubsub-slow-consumer fault-nats-slow-consumer fault-jetstream-slow-consumer

# nginx and HAProxy side by side: each scenario, then its twin on HAProxy (same workload, same [expect])
BALANCED := pubsub sticky-round-robin-polling sticky-ip-hash-polling sticky-ip-hash-subnets sticky-hash-subnets \
           sticky-cookie-polling socketio-redis-manager sticky-cookie-failover fault-pubsub-kill-replica \
           fault-streams-kill-replica partition-rooms
BALANCERS := $(foreach s,$(BALANCED),$(s) $(s)-haproxy)

# Redis Cluster: classic PUBLISH vs sharded Pub/Sub in one room, then in 200 rooms (bus bytes per message,
# load per node), then a master killed under sharded Pub/Sub
CLUSTER := cluster-pubsub cluster-sharded cluster-rooms-pubsub cluster-rooms-sharded cluster-sharded-kill-master

# on a Docker Swarm: same-node then cross-node latency, node loss PubSub vs Streams, a cut-off and a drained node,
# rolling service updates start-first vs stop-first
SWARM   := swarm-pubsub-one-node swarm-pubsub swarm-node-loss-pubsub swarm-node-loss-streams \
           swarm-partition-node-streams swarm-drain-node-streams swarm-sticky-round-robin-polling swarm-sticky-cookie-polling \
           swarm-deploy-streams-start-first swarm-deploy-streams-stop-first swarm-deploy-pubsub-kill

# topology changes on one engine, each beside its HAProxy twin: rolling restarts drained from the balancer
# (SIGTERM under Streams, SIGKILL under PubSub), then one the balancer is not told about, a scale-in, the
# balancer reloaded without and with a shutdown bound (worker_shutdown_timeout, hard-stop-after), then a
# scale-out under a consistent and a plain hash; nginx's own max_fails = 1 has no twin (HAProxy here runs
# no health checks: it never holds a replica down)
DEPLOYED := deploy-streams-rolling-graceful deploy-pubsub-rolling-kill deploy-streams-rolling-undrained \
            deploy-scalein-pubsub deploy-reload-no-timeout deploy-reload-timeout \
            deploy-scaleout-hash-consistent deploy-scaleout-hash
DEPLOYS := $(foreach s,$(DEPLOYED),$(s) $(s)-haproxy) deploy-streams-rolling-max-fails

# Socket.IO connection state recovery, one fault per row: the seed Node server with
# @socket.io/redis-streams-adapter (recovery on) beside the lab's python-socketio replica with its own
# recovery (-python), then each one's no-recovery control (the classic adapter, python-socketio's Redis manager)
RECOVERED := recovery-transport-close recovery-graceful-shutdown recovery-kill-replica recovery-restart-redis \
           recovery-rolling-restart recovery-past-max-disconnection recovery-trimmed recovery-twice \
           recovery-nothing-received recovery-long-lived recovery-control-transport-close
RECOVERY := $(foreach s,$(RECOVERED),$(s) $(s)-python)

.DEFAULT_GOAL := help
comma := ,
.PHONY: help setup images scenario-pubsub scenario-faults scenario-brokers scenario-sticky scenario-balancers scenario-seed-node scenario-cluster scenario-deploys scenario-recovery scenario-swarm swarm-up swarm-down lint test test-unit test-docker bench-lifecycle bench-faults bench-signals bench-connections bench-capacity bench-replicas bench-partitioning bench-defaults bench-storm clean

help: ## list the targets
	@grep -hE '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## install the Python dependencies into .venv

images: setup ## start a Docker engine if none answers, then find or build the images
	$(LAB) images

scenario-pubsub: setup ## the failure and the fix: no broker vs Redis PubSub, same workload: a summary and its detail table
	$(LAB) run no-broker pubsub

scenario-faults: setup ## every fault scenario, every broker (PubSub, Streams, NATS, JetStream): lost, duplicated, recovered, max gap — a summary, then one table per kind
	$(LAB) run $(FAULTS)

scenario-brokers: setup ## Redis PubSub vs Streams vs NATS vs JetStream: the headline, then each shared fault — one run
	$(LAB) run $(BROKERS)

scenario-sticky: setup ## Socket.IO behind round-robin, ip_hash, hash, cookie; rooms; the article's events; a sticky server killed — a summary, then one table per kind
	$(LAB) run $(STICKY)

scenario-balancers: setup ## nginx vs HAProxy: each sticky, Socket.IO and fault scenario beside its HAProxy twin — one summary with a balancer column
	$(LAB) run $(BALANCERS)

scenario-seed-node: setup ## the article's own Node servers: glob bug, pSubscribe, Socket.IO adapter off/on, Redis restart and replica kill beside python-socketio — one run
	$(LAB) run $(SEED_NODE)

scenario-cluster: setup ## Redis Cluster: classic PUBLISH vs sharded Pub/Sub, 1 and 200 rooms (bus bytes/msg, load per node), a master killed — a summary, then one table per kind
	$(LAB) run $(CLUSTER)

scenario-deploys: setup ## topology changes as faults, nginx and HAProxy side by side: rolling restarts, scale-in, balancer reloads, scale-out under consistent vs plain hash — drops, clients back, remapped, loss — a summary with a balancer column, then one table
	$(LAB) run $(DEPLOYS)

scenario-recovery: setup ## Socket.IO connection state recovery under each fault (transport closed, graceful and SIGKILLed server, Redis restarted, rolling restart, past maxDisconnectionDuration, trimmed, twice, nothing received yet), the Node server with the streams adapter beside the python-socketio replica, and each one's no-recovery control — one table
	$(LAB) run $(RECOVERY)

scenario-swarm: setup ## on a Docker Swarm (root): builds a local 3-node one when none is up (removed afterwards); same vs cross-node, node loss PubSub vs Streams, rolling updates — a summary, then one table per kind
	$(LAB) run --swarm-up 3 $(SWARM)

swarm-up: setup images ## a local 3-node Docker Swarm on this machine (root): extra engines in network namespaces
	$(LAB) swarm up --nodes $(or $(NODES),3)

swarm-down: setup ## remove the local Docker Swarm (engines, namespaces, links, data)
	$(LAB) swarm down

demo-%: setup ## keep one scenario's stack up for a live demo: chat page, live view; Ctrl-C removes it (e.g. make demo-pubsub)
	$(LAB) up $*

scenario-%: setup ## run one scenario from scenarios/ (e.g. make scenario-seed-glob)
	$(LAB) run $*

test: setup images node-deps browser ## all tests, in two lanes at once (tests/lanes.py): the scenarios on real containers beside the unit tests
	$(PYTHON) tests/lanes.py

lint: setup ## ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade) and mypy over labs/ and tests/
	$(PYTHON) -m ruff check labs tests
	$(PYTHON) -m mypy

test-unit: setup ## only the pure tests (no Docker)
	$(PYTHON) -m pytest -m "not docker"

test-docker: setup images node-deps browser ## only the tests that run real containers
	$(PYTHON) -m pytest -m docker

.PHONY: browser screenshot
browser: ## headless Chromium for the browser test: Debian's chromium package, installed with apt when absent
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; }; } || \
	  { echo "chromium not found and not installable here: run 'apt-get install -y chromium' as root"; exit 1; }

screenshot: setup images browser ## the chat page as the README shows it -> docs/trainer-chat.png
	mkdir -p docs
	WSLAB_SCREENSHOT=docs/trainer-chat.png $(PYTHON) -m pytest -q tests/docker/test_browser.py -k pubsub

.PHONY: node-deps
node-deps: tests/node/node_modules/.package-lock.json ## the Node clients' pinned packages (npm ci, when the lock changed)

# npm ci writes node_modules/.package-lock.json: newer than package-lock.json once installed from it
tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund; \
	else echo "npm not found: the tests that run Node clients will be skipped (install Node 20 and npm)"; fi

bench-lifecycle: setup images ## median up/down time of redis + 3 replicas + nginx over 5 runs -> results/bench/
	$(PYTHON) -m labs.bench lifecycle --runs 5

bench-faults: setup images ## every fault scenario RUNS times (default 10): what each broker loses, medians -> results/bench/
	$(PYTHON) -m labs.bench faults --runs $(or $(RUNS),10)

bench-signals: setup images ## SIGINT and SIGTERM at 12 moments of a run each: signal-to-exit times vs 2 s -> results/bench/
	$(PYTHON) -m labs.bench signals --runs 12

bench-capacity: setup images ## no broker / PubSub / Streams x 1-4 replicas: offered rate climbed with locust until it breaks; the knee: p99 <= 50 ms, 0 lost -> results/bench/capacity-*/
	$(PYTHON) -m labs.bench capacity --runs $(or $(RUNS),3)

bench-replicas: setup images node-deps ## the lab's Python replica vs the article's Node server, side by side: CPU µs per delivery and their ratio (RUNS, default 5), then the knees (KNEE_RUNS, default 1; VARIANTS adds replica options) -> results/bench/replicas-*/
	$(PYTHON) -m labs.bench replicas --runs $(or $(RUNS),5) --knee-runs $(or $(KNEE_RUNS),1) --variants $(or $(VARIANTS),python$(comma)node)

bench-connections: setup images ## N (default 20000; VIA=bridge skips docker-proxy; RATE=auto|<per s>|off paces the ramp, RAMP_LIMIT=<s> ends it) idle WebSockets through nginx, one room, broadcasts: connect rate, memory, 95%/100% times, loss -> results/bench/
	$(PYTHON) -m labs.bench connections --connections $(or $(N),20000) --runs $(or $(RUNS),1) --via $(or $(VIA),published) --rate $(or $(RATE),auto) $(if $(RAMP_LIMIT),--ramp-limit $(RAMP_LIMIT))

bench-partitioning: setup images ## N (default 20000) connections in 200 rooms over 4 replicas: one Redis vs a Redis Cluster (sharded / classic), round-robin vs partitioned by room, no broker: round times, loss, load per node -> results/bench/partitioning-*/
	$(PYTHON) -m labs.bench partitioning --connections $(or $(N),20000) --runs $(or $(RUNS),3) $(if $(SETUPS),--setups "$(SETUPS)")

bench-defaults: setup images ## the stack of `labs up pubsub` at its sized capacity (20,000 here; VIA=published goes in through the 127.0.0.1 port): refused connections, loss -> results/bench/defaults-*/
	$(PYTHON) -m labs.bench defaults --runs $(or $(RUNS),1) --via $(or $(VIA),bridge)

bench-storm: setup images ## N (default 10000) clients reconnect at once after a replica is SIGKILLed (TRIGGER=restart-balancer: the balancer; BALANCER=haproxy), per backoff setting (SETTINGS=no-jitter,socketio,wide): time until everyone is back, handshake peaks, refusals, loss, SUBSCRIBE/s -> results/bench/storm-*/
	$(PYTHON) -m labs.bench storm --connections $(or $(N),10000) --runs $(or $(RUNS),1) --trigger $(or $(TRIGGER),kill-replica) $(if $(SETTINGS),--settings "$(SETTINGS)") $(if $(BALANCER),--balancer $(BALANCER))

clean: setup ## remove containers and networks left behind by killed runs
	$(LAB) clean
