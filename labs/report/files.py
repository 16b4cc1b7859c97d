"""results/<scenario>/<UTC stamp>/ for one run: result.json, history.json, report.md, report.html,
timeline.png, placement.png, the balancer's config (nginx.conf or haproxy.cfg) and a log per container.
Written under a hidden name and renamed when complete, so a failed or interrupted run never leaves a
half-written one."""

from __future__ import annotations

import enum
import json
import shutil
from pathlib import Path
from typing import Any

from . import html, plots
from .result import RunResult, finite, markdown, to_json


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else str(value)


def write(result: RunResult, results_dir: Path, table: str) -> Path:
    final = results_dir / result.scenario.name / result.stamp
    partial = final.with_name(f".{result.stamp}.partial")
    partial.mkdir(parents=True, exist_ok=False)
    try:
        (partial / "result.json").write_text(
            json.dumps(finite(to_json(result)), indent=2, default=_plain, allow_nan=False) + "\n")
        (partial / "history.json").write_text(
            json.dumps(finite(result.history.to_dict()), default=_plain, allow_nan=False) + "\n")
        (partial / "report.md").write_text(markdown(result, table))
        (partial / "report.html").write_text(html.page(result))
        plots.run_pngs(result, partial)
        (partial / result.scenario.topology.balancer.config_file).write_text(result.balancer_conf)
        logs = partial / "logs"
        logs.mkdir()
        for name, text in result.logs.items():
            (logs / f"{name}.log").write_text(text)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
