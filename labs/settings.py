"""Environment variables, read in one place."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build"
RESULTS_DIR = Path(os.environ.get("WSLAB_RESULTS", ROOT / "results"))
SCENARIOS_DIR = ROOT / "scenarios"
TEMPLATES_DIR = ROOT / "templates"

#: quiet progress output (CI sets CI=true)
QUIET = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

#: a real Swarm's manager, for `cluster use` when --manager is not given
DOCKER_HOST = os.environ.get("DOCKER_HOST", "")

#: the label every Docker resource of the lab carries; its value is the run id
LABEL = "wslab.run"

#: a second label on every Docker resource: who started it (WSLAB_OWNER, default "lab"). Test sessions that
#: share one engine each check and remove only their own resources.
OWNER_LABEL = "wslab.owner"
OWNER = os.environ.get("WSLAB_OWNER", "lab")
if not OWNER.replace("-", "").isalnum() or len(OWNER) > 32:
    raise SystemExit(f"WSLAB_OWNER={OWNER!r} is not a short name of letters, digits and '-': set it to e.g. 'lab'")
