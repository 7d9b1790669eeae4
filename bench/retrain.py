"""A nightly retrain end to end: gated fine-tune vs the seed recipe's retrain, and hot swap.

In one run, on one style (default shakespeare) and one time budget (default 5 min):

* **ours**: ``training.retrain.Retrainer`` (the scheduler's job): fine-tune the active
  version in a subprocess, score the active version on the same held-out split, promote
  only if val loss falls by at least the configured margin;
* **seed recipe**: what the copied recipes do every night: train from scratch for the
  same budget and serve the result whatever it scores (here ``training train --scratch``,
  our trainer, so only the policy differs);
* **swap time**: a running batching engine (``serving.engine``, hot reload as
  configured in ``[inference] poll_s``) serves the style throughout; the figure is the
  time from the ACTIVE marker's replacement to the first generation by the new version.
  If the gate refused the candidate, the bench activates it itself (then restores the
  old one) so the swap is still measured; the JSON says which.

Everything is written to a temporary registry and SQLite database: the models the bot
serves are not touched. Prints progress, then one final JSON line.

    python bench/retrain.py [--style shakespeare] [--minutes 5] [--no-seed]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make genmodels/, training/, bench/ importable

from bench.sampling import machine  # noqa: E402
from genmodels import artifact, registry  # noqa: E402
from genmodels.sampler import SamplingParams  # noqa: E402
from storage.__main__ import upgrade  # noqa: E402
from storage.engine import make_engine, session_factory  # noqa: E402
from training.retrain import Retrainer  # noqa: E402
from training.schedule_config import load_schedule  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def served_version(engine, style: str) -> str:
    params = SamplingParams(seed=1, max_chars=20, stop="none")
    return engine.submit(style, "", params).result(timeout=120).sample.version


def measure_swap(engine, style: str, new_version: str, since: float) -> float:
    """Seconds from ``since`` (wall clock) to the first generation by ``new_version``."""
    while served_version(engine, style) != new_version:
        time.sleep(0.01)
    return time.time() - since


def seed_recipe(style: str, minutes: float, work: Path, env: dict) -> float:
    """Retrain from scratch for the same budget; its val loss (it would be served)."""
    out = work / "seed"
    subprocess.run([sys.executable, "-m", "training", "train", style, "--scratch",
                    "--minutes", f"{minutes:g}", "--out", str(out)], cwd=ROOT,
                   env=os.environ | env | {"TRAINING_RUNS": str(work / "seed-runs")},
                   check=True, stdout=subprocess.DEVNULL)
    return float(artifact.load(out).metrics["val_loss_nats"])


def swap(engine, style: str, result) -> tuple[float, bool]:
    """(swap seconds, whether the bench activated a refused candidate to measure it)."""
    forced = result.outcome != "promoted"
    if forced:  # measure the swap anyway, then put the served version back
        since = time.time()
        registry.activate(style, result.new_version)
    else:
        since = (registry.registry_root() / style / registry.MARKER).stat().st_mtime
    seconds = measure_swap(engine, style, result.new_version, since)
    if forced:
        registry.activate(style, result.old_version)
    return seconds, forced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--style", default="shakespeare")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--no-seed", action="store_true", help="skip the seed recipe's retrain")
    args = p.parse_args()
    from serving.config import inference_settings
    from serving.engine import Engine

    work = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    os.environ["MODEL_REGISTRY"] = str(work / "registry")  # the engine reads it too
    url = f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    book, schedule = load_schedule()
    poll_s = float(inference_settings()["poll_s"])
    engine = Engine(poll_s=poll_s).start()
    log(f"serving {served_version(engine, args.style)}; retraining {args.style} for "
        f"{args.minutes:g} min (ours)")
    job = Retrainer(session_factory(make_engine(url)), book, schedule)
    result = job.run(args.style, trigger="manual", minutes=args.minutes)
    log(result.message())
    if result.outcome == "failed":
        raise SystemExit(f"retrain failed: {result.error}")
    swap_s, forced = swap(engine, args.style, result)
    engine.stop()
    seed_val = None
    if not args.no_seed:
        log(f"seed recipe: from scratch for {args.minutes:g} min, served regardless")
        seed_val = seed_recipe(args.style, args.minutes, work, {})
    shutil.rmtree(work, ignore_errors=True)
    plan = schedule.for_style(args.style)
    print(json.dumps({
        "bench": "retrain", "style": args.style, "minutes": args.minutes,
        "margin": plan.margin, "learning_rate_scale": plan.learning_rate_scale,
        "ours": {"outcome": result.outcome, "old_version": result.old_version,
                 "new_version": result.new_version, "val_before": result.old_val,
                 "val_after": result.new_val,
                 "served_val": result.new_val if result.outcome == "promoted"
                 else result.old_val, "seconds": round(result.seconds, 1)},
        "seed_recipe": {"val_after": seed_val, "served_val": seed_val},
        "swap_s": round(swap_s, 3), "swap_forced_by_bench": forced, "poll_s": poll_s,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
