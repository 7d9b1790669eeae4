"""The cluster bench, reduced: every role replicated, one of each killed, under traffic.

``bench/cluster.py`` with a few users for about 40 s instead of 200 for minutes: the
same roles (haproxy, 2 webhook bot replicas, 2 inference replicas, 2 schedulers, 2
training workers where the task queue exists, each in a folder of its own), PostgreSQL,
Redis and RabbitMQ as this machine runs them, moto's S3 server and the fake Bot API.
One bot replica, one inference replica, the leading scheduler and the process running
a retrain are killed with SIGKILL, and a new version is promoted. The run's own
targets are asserted; it skips only where a service it needs is missing.

    .venv/bin/python -m pytest -q tests/bench/test_cluster.py -s
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.cluster_roles import missing_services  # noqa: E402

REDUCED = ["--users", "12", "--seconds", "40", "--interval", "6", "--flooders", "2",
           "--flood", "12", "--retrain-every", "8", "--settle", "45"]


@pytest.mark.timeout(400)
def test_the_reduced_cluster_meets_its_targets_through_four_kills():
    problems = missing_services()
    if problems:
        pytest.skip("; ".join(problems))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster.py"), *REDUCED],
                          cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["replies_expected"] > 0
    assert result["replies_delivered"] == result["replies_expected"]
    assert result["replies_duplicated"] == 0
    assert result["log_rows_lost"] == 0
    assert result["rate_limit_violations"] == 0
    assert result["flood"]["texts"] < result["flood"]["requests"]  # the limit did bite
    assert result["retrains_duplicated"] == 0
    assert result["leader_failover_s"] is not None and result["leader_failover_s"] <= 30
    assert result["promotion_seen_by"] == result["inference_live"] == 2
    assert result["serving_promoted_at_end"] == 1  # the one live inference replica
    assert result["active_version"] == result["promoted_version"]  # no retrain replaced it
    assert set(result["kills"]) >= {"bot-1", "inference-1"}
    assert all(result["targets_met"].values()), result["targets_met"]
    # Every event happened: a worker was killed while its training child ran (which
    # needs the leading scheduler's jobs to run: see scheduler_job_errors), and the
    # run it held was retried once by the other worker, never trained twice.
    assert all(result["scenario"].values()), (result["scenario"],
                                               result["scheduler_job_errors"])
    assert result["retrains_run"] >= 1
