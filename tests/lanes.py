"""Run the suite in two pytest processes at once, each with its own WSLAB_OWNER, so neither sees, checks or
cleans the other's containers, networks or local Swarm.

The Docker tests spend most of their time waiting on the clock (a scenario sends at its declared rate, a
fault heals after its delay), not on the two cores: two lanes side by side take little more than the
longer one. Lane `serial` holds the unit tests (CPU-bound), the tests that own an engine-wide resource of
their owner for a long time (the local Swarm) and the fault scenarios (to even out the two lanes' times);
lane `stacks` holds every other Docker test, so a new test file lands there without being named.

`python tests/lanes.py [pytest args...]`: the `stacks` lane prints as it runs; the `serial` lane's output is
kept in build/test-serial.log and printed when it ends. The exit status is the first non-zero of the two.
A Ctrl-C reaches both (one process group, as a terminal sends it); a SIGTERM is passed on to both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the lane beside the Docker stacks: the pure tests, the long holders of an owner-wide resource, and the
#: fault scenarios, which balance the two lanes' times (docs/testing.md, "How long")
SERIAL = ["tests/unit", "tests/docker/test_swarm.py", "tests/docker/test_seed_node.py",
          "tests/docker/test_faults.py"]
LOG = ROOT / "build" / "test-serial.log"


def lanes(extra: list[str]) -> dict[str, list[str]]:
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra]
    return {"serial": [*pytest, *SERIAL],
            "stacks": [*pytest, "tests", *(f"--ignore={path}" for path in SERIAL)]}


def main(extra: list[str]) -> int:
    LOG.parent.mkdir(exist_ok=True)
    commands = lanes(extra)
    with LOG.open("wb") as log:
        serial = subprocess.Popen(commands["serial"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "WSLAB_OWNER": "test-serial"})
        stacks = subprocess.Popen(commands["stacks"], cwd=ROOT, env={**os.environ, "WSLAB_OWNER": "test-stacks"})

        def forward(signum: int, _frame: object) -> None:
            for child in (serial, stacks):
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        # Ctrl-C reaches the children from the terminal itself; here it must only not cut the waiting short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        codes = {"stacks": stacks.wait(), "serial": serial.wait()}
    print(f"\n---- lane serial ({' '.join(SERIAL)}), WSLAB_OWNER=test-serial ----", flush=True)
    sys.stdout.write(LOG.read_text(errors="replace"))
    print(f"---- lanes: stacks exit {codes['stacks']}, serial exit {codes['serial']} ----", flush=True)
    return next((code for code in codes.values() if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
