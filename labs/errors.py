"""One exception base for the lab; the CLI turns each into one line and an exit code."""


class LabError(Exception):
    """Something the user can fix: bad input or a missing prerequisite (exit 2)."""


class ScenarioError(LabError):
    """A scenario file is missing, malformed or asks for something impossible."""


class EngineError(LabError):
    """No Docker engine answers and none could be started."""


class ImageError(LabError):
    """An image could not be found, pulled or built."""


class StackError(LabError):
    """A container did not start, did not become ready, or was rejected (e.g. `nginx -t`)."""


class RunFailed(LabError):
    """Something broke after a run's stack was up and its workload had started (a fault that would not heal):
    that run failed (exit 1), unlike a setup problem found before anything ran (exit 2)."""


class SwarmError(LabError):
    """A Docker Swarm cannot be built, found or reached."""
