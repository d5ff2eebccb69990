"""bench/sla.py, a tiny run: it EXPLAINs the queries the code builds and fails (exit 1)
when any of its three figures misses the goal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PG_ENV, pg_base_url

BENCH = Path(__file__).resolve().parents[1] / "bench" / "sla.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    url = pg_base_url()
    assert url is not None
    env = os.environ | {PG_ENV: url}
    return subprocess.run(
        [sys.executable, str(BENCH), "--count", "300", "--rounds", "3", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


def figures(out: str) -> list[str]:
    labels = ("due-work scan", "lookup by reference", "tickets list --due")
    return [line for line in out.splitlines() if line.startswith(labels)]


def test_a_small_run_meets_its_goals_and_explains_the_code_queries() -> None:
    done = run("--goal-ms", "2000")  # a loaded machine must not fail it
    assert done.returncode == 0, done.stdout + done.stderr
    plans = {line.split(":", 1)[0]: line for line in done.stdout.splitlines() if "plan:" in line}
    assert "LockRows" in plans["scan plan"]  # FOR UPDATE SKIP LOCKED, as the jobs run it
    assert "sla_due_at" in plans["list plan"] and "article" in plans["list plan"]
    assert len(figures(done.stdout)) == 3
    assert all(line.endswith(" ok") for line in figures(done.stdout))


def test_every_figure_that_misses_its_goal_fails_the_run() -> None:
    done = run("--goal-ms", "0.0001")
    assert done.returncode == 1, done.stdout + done.stderr
    shown = figures(done.stdout)
    assert len(shown) == 3 and all("over the 0.0001 ms goal" in line for line in shown)
