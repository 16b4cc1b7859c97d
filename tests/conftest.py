import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/docker/ runs real containers: the one place that marks it, so that
    `-m "not docker"` skips it and `-m docker` selects it (no test module marks itself)."""
    for item in items:
        if "docker" in item.path.relative_to(item.config.rootpath).parts[:2]:
            item.add_marker(pytest.mark.docker)
