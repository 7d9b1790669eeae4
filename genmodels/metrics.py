"""Prometheus text exposition of the engine's counters (``GET /metrics`` of the service).

Hand-written (the format is a few lines of text) rather than a new dependency:
requests by outcome, queue depth, rows stepping, mean batch size, characters written
and their rate since the previous scrape, steps, reloads, errors the loop survived,
whether each loop runs, the served version, the BLAS threads a step uses, and a request
latency histogram (milliseconds, submit to last character).

    curl -s 127.0.0.1:8081/metrics
"""
from __future__ import annotations

import threading
import time

from genmodels.engine import Engine
from genmodels.engine_stats import LATENCY_BUCKETS_MS

P = "stylebot_inference_"
_last: dict[str, tuple[float, int]] = {}  # style -> (time, chars) at the previous scrape
_lock = threading.Lock()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _chars_per_s(style: str, chars: int) -> float:
    now = time.monotonic()
    with _lock:
        then, before = _last.get(style, (now, chars))
        _last[style] = (now, chars)
    return (chars - before) / (now - then) if now > then else 0.0


def _help(out: list[str], name: str, kind: str, text: str) -> None:
    out += [f"# HELP {P}{name} {text}", f"# TYPE {P}{name} {kind}"]


def render_metrics(engine: Engine) -> str:
    loops = engine.loaded()
    out: list[str] = []
    _help(out, "requests_total", "counter", "Finished requests by outcome.")
    for style, loop in loops.items():
        for outcome, n in loop.stats.requests.items():
            out.append(f'{P}requests_total{{style="{_label(style)}",outcome="{outcome}"}} {n}')
    gauges = {"queue_depth": ("gauge", "Requests waiting for a slot.", lambda l: l.depth()[1]),
              "batch_rows": ("gauge", "Requests stepping now.", lambda l: l.depth()[0]),
              "mean_batch_size": ("gauge", "Mean rows per step since start.",
                                  lambda l: round(l.stats.batch_rows / max(l.stats.steps, 1), 3)),
              "chars_total": ("counter", "Characters sampled.", lambda l: l.stats.chars),
              "steps_total": ("counter", "Batched LSTM steps.", lambda l: l.stats.steps),
              "reloads_total": ("counter", "Hot reloads of a new model version.",
                                lambda l: l.stats.reloads),
              "loop_errors_total": ("counter", "Failed steps and loop errors survived.",
                                    lambda l: l.stats.errors),
              "loop_ready": ("gauge", "1 if the loop runs and beat recently (/healthz).",
                             lambda l: int(l.health()["ready"]))}
    for name, (kind, text, get) in gauges.items():
        _help(out, name, kind, text)
        out += [f'{P}{name}{{style="{_label(s)}"}} {get(l)}' for s, l in loops.items()]
    _help(out, "chars_per_second", "gauge", "Characters per second since the previous scrape.")
    out += [f'{P}chars_per_second{{style="{_label(s)}"}} '
            f'{_chars_per_s(s, l.stats.chars):.1f}' for s, l in loops.items()]
    _help(out, "model_info", "gauge", "The model version each style serves.")
    out += [f'{P}model_info{{style="{_label(s)}",version="{_label(l.version)}"}} 1'
            for s, l in loops.items()]
    _help(out, "blas_threads", "gauge", "OpenBLAS threads a step uses now (0: not set yet).")
    out.append(f"{P}blas_threads {engine.blas.current or 0}")
    _latency(out, loops)
    return "\n".join(out) + "\n"


def _latency(out: list[str], loops: dict) -> None:
    _help(out, "latency_ms", "histogram", "Request latency, submit to last character (ms).")
    for style, loop in loops.items():
        s, total = _label(style), 0
        counts = list(loop.stats.latency_counts)
        for bound, n in zip([*map(str, LATENCY_BUCKETS_MS), "+Inf"], counts):
            total += n
            out.append(f'{P}latency_ms_bucket{{style="{s}",le="{bound}"}} {total}')
        out.append(f'{P}latency_ms_sum{{style="{s}"}} {loop.stats.latency_sum_ms:.3f}')
        out.append(f'{P}latency_ms_count{{style="{s}"}} {total}')
