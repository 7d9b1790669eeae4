"""Every process replicated on one machine, under users' traffic, killing one of each.

Starts, on this machine: PostgreSQL, Redis and RabbitMQ as they run here (a schema, a
key prefix and a queue made for the run, removed after it), moto's S3 server, the fake
Telegram Bot API (tests/bot/fake_telegram.py), haproxy in front of 2 bot replicas in
webhook mode, 2 inference replicas (``[inference] urls``), 2 schedulers and, where the
task queue exists (``python -m training.worker``), 2 training workers. Each simulated
machine is a folder of its own with a copy of the code, its config.toml and ``var/``
(bench/cluster_roles.py). Users' traffic is posted through haproxy as Telegram's
webhook posts it (bench/cluster_traffic.py); during it one bot replica, one inference
replica, the leading scheduler and the process running a retrain are killed with
SIGKILL, and one new model version is promoted from an admin machine. One final JSON
line: replies, duplicates, log rows lost, rate-limit violations, retrains, the
scheduler's failover, which inference replicas serve the promoted version, latency,
and ``targets_met``.

    python bench/cluster.py                                  # 200 users, 180 s
    python bench/cluster.py --users 16 --seconds 40          # the test's reduced run

Retrains use a tiny model and corpus (tests/conftest.py), so one takes seconds; the
gate's margin is set so high that no retrain promotes: the one promotion is the
admin's, and a killed retrain must leave the served model as it was.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bot/, genmodels/, storage/ importable
sys.path.insert(0, str(ROOT / "tests" / "bot"))  # the fake Telegram server

from bench.cluster_roles import (  # noqa: E402
    ADMIN,
    SECRET,
    TOKEN,
    missing_services,
)
from bench.cluster_run import Cluster  # noqa: E402
from bench.cluster_traffic import Traffic, account  # noqa: E402
from tests.tiny_config import tiny_config  # noqa: E402

BURST, PER_MINUTE = 5, 12  # [rate_limit] of every bot replica


def config_text(run: dict, extra: str = "") -> str:
    """Every machine's config.toml (a bot replica's adds [telegram] and [inference])."""
    return tiny_config(minutes=run["train_minutes"]) + f"""\

[bot]
notify_every_s = 2

[rate_limit]
burst = {BURST}
per_minute = {PER_MINUTE}

[admins]
telegram = ["{ADMIN}"]

[schedule]
cron = "0 0 1 1 *"        # never during a run: retrains come from /retrain
nightly_bandit = "0 0 1 1 *"
poll_seconds = 1
heartbeat_seconds = 1
minutes = {run["train_minutes"]}
margin = 10.0             # no retrain promotes: the admin's promotion is the one

[redis]
key_prefix = "{run["prefix"]}"

[store]
url = "{run["store"]}"
endpoint_url = "{run["endpoint"]}"

{run["queue"]}
[inference]
backend = "numpy"
blas_threads = 1
poll_s = 1.0
{extra}"""


def bot_extra(port: int, inference: list[str]) -> str:
    urls = ", ".join(f'"{u}"' for u in inference)
    return f"""urls = [{urls}]

[telegram]
mode = "webhook"
webhook_url = "https://bot.example.org/telegram"
listen = "127.0.0.1"
port = {port}
takeover_s = 3
"""


async def drive(cluster: Cluster, args) -> dict:
    """The traffic, the kills and the promotion; the accounting."""
    import aiohttp

    traffic = Traffic(cluster.server, cluster.front_url, SECRET)
    seconds = args.seconds
    async with aiohttp.ClientSession() as http:
        jobs = [traffic.steady(http, 1000 + i, seconds, args.interval)
                for i in range(args.users)]
        jobs += [traffic.flood(http, 5000 + i, seconds * (0.15 + 0.1 * i / max(1, args.flooders)),
                               args.flood) for i in range(args.flooders)]
        jobs.append(traffic.admin(http, ADMIN, seconds, args.retrain_every))
        chaos = asyncio.create_task(cluster.chaos(seconds))
        started = time.monotonic()
        await asyncio.gather(*jobs)
        await traffic.drain()
        await chaos
        traffic_s = time.monotonic() - started
        deadline = time.monotonic() + args.settle
        while traffic.waiting() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # a reply sent twice would arrive by now
    result = account(traffic, BURST, PER_MINUTE)
    result["traffic_s"] = round(traffic_s, 1)
    result["log_rows_lost"] = await asyncio.to_thread(cluster.log_rows_lost, traffic.sent)
    return result


def targets(result: dict) -> dict:
    live = result.get("inference_live")
    failover = result.get("leader_failover_s")
    return {
        "all_replies_delivered": result["replies_delivered"] == result["replies_expected"],
        "no_reply_duplicated": result["replies_duplicated"] == 0,
        "no_log_row_lost": result["log_rows_lost"] == 0,
        "no_rate_limit_violation": result["rate_limit_violations"] == 0,
        "no_retrain_duplicated": result["retrains_duplicated"] == 0,
        "leader_failover_s<=30": failover is not None and failover <= 30,
        "promotion_seen_by_every_live_replica": bool(live)
        and result["promotion_seen_by"] == live,
    }


def scenario(result: dict) -> dict:
    """Whether each event of the run happened (a target measured without its kill
    proves nothing)."""
    kills = result.get("kills", {})
    return {
        "bot_replica_killed": "bot-1" in kills,
        "inference_replica_killed": "inference-1" in kills,
        "leading_scheduler_killed": any(k.startswith("scheduler-") for k in kills),
        "worker_killed_mid_retrain": str(result.get("killed_mid_retrain")).startswith(
            "worker-"),
        "scheduler_jobs_ran": result.get("scheduler_job_errors") == 0,
        "version_promoted": result.get("promotion_seen_by", 0) > 0,
    }


async def bench(args) -> dict:
    import logging

    from fake_telegram import FakeTelegram  # type: ignore[import-not-found]

    # A killed replica's unfinished calls end in tracebacks of the fake Bot API's server.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    server = await FakeTelegram(TOKEN).start()
    folder = Path(tempfile.mkdtemp(prefix="stylebot-cluster-"))
    cluster = Cluster(folder, server, args, config_text, bot_extra)
    try:
        await cluster.start()
        result = await drive(cluster, args)
        result.update(await cluster.report())
    finally:
        await cluster.stop()
        await server.stop()
        if args.keep:
            print(f"machines kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["targets_met"] = targets(result)
    result["scenario"] = scenario(result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=200, help="steady users")
    p.add_argument("--seconds", type=float, default=180.0, help="length of the traffic")
    p.add_argument("--interval", type=float, default=10.0,
                   help="seconds between a steady user's requests (>= 5: inside the limit)")
    p.add_argument("--flooders", type=int, default=10, help="users sending a burst")
    p.add_argument("--flood", type=int, default=15, help="requests in each burst")
    p.add_argument("--retrain-every", type=float, default=10.0,
                   help="seconds between the admin's /retrain")
    p.add_argument("--train-minutes", type=float, default=0.1, help="budget of a retrain")
    p.add_argument("--settle", type=float, default=60.0,
                   help="longest wait for the last replies after the traffic")
    p.add_argument("--keep", action="store_true", help="keep the machines' folders")
    args = p.parse_args(argv)
    problems = missing_services()
    if problems:
        print(json.dumps({"skipped": problems}))
        return 3
    args.run_id = uuid.uuid4().hex[:8]
    started = time.monotonic()
    result = asyncio.run(bench(args))
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["machine"] = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, " \
                        f"Python {platform.python_version()}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
