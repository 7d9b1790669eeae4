"""GPU check for the engine's TensorFlow step: is a GPU visible, how fast is the batched
step there against NumPy at batch 1/64/256 (one BLAS thread, and one per core), and are
the logits the same (1e-4)? Last, the NumPy step at batch 64 while another process keeps
a core busy.

Meant for a borrowed GPU machine with only ``pip install -e .[train]`` (tensorflow-cpu
on PyPI cannot use a GPU): it says in its JSON whether TensorFlow saw a GPU, and if not,
the TF figures are TensorFlow on the CPU. Takes well under 3 minutes.

    python bench/gpu_check.py [--model models/austen] [--steps 200]

Prints readable lines, then one JSON line. Timings are measured, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # a bare machine may lack even NumPy: say so in the JSON line, not a traceback
    import numpy as np  # noqa: E402

    import genmodels  # noqa: E402,F401  the BLAS thread default, before NumPy
    from genmodels import (
        artifact as artifacts,  # noqa: E402
        blas_threads,  # noqa: E402
    )
    from serving.batch import NumpyBackend  # noqa: E402
    from serving.tf_backend import _nvidia_device_present  # noqa: E402
except ImportError as _exc:  # pragma: no cover - depends on the machine
    print(json.dumps({"bench": "gpu_check", "error": f"{_exc}; run pip install -e .[train]",
                      "nvidia_smi": shutil.which("nvidia-smi") and subprocess.run(
                          ["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()}))
    sys.exit(0)

BATCHES = (1, 64, 256)
TOLERANCE = 1e-4


def nvidia_smi() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"error: {exc}"


def time_steps(backend, batch: int, steps: int, vocab: int) -> float:
    """Median seconds per step (logits back on the host, as the engine needs them)."""
    rng = np.random.default_rng(batch)
    ids = rng.integers(0, vocab, (steps, batch))
    state = backend.new_state(batch)
    for t in range(5):  # warm-up (TF traces once for all batch sizes)
        backend.step(ids[t], state)
    per = []
    for chunk in range(5):
        start = time.perf_counter()
        for t in range(chunk * steps // 5, (chunk + 1) * steps // 5):
            backend.step(ids[t], state)
        per.append((time.perf_counter() - start) / (steps // 5))
    return float(np.median(per))


def equivalence(tf_b, np_b, vocab: int, steps: int = 60) -> float:
    """Max |logit difference| over ``steps`` steps of 64 streams from a zero state."""
    rng = np.random.default_rng(7)
    s_tf, s_np = tf_b.new_state(64), np_b.new_state(64)
    worst = 0.0
    for _ in range(steps):
        ids = rng.integers(0, vocab, 64)
        worst = max(worst, float(np.abs(tf_b.step(ids, s_tf) - np_b.step(ids, s_np)).max()))
    return worst


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "austen")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    art = artifacts.load(args.model)
    vocab = art.model_config.vocab_size
    out = {"bench": "gpu_check", "model": art.version, "hidden": art.model_config.hidden,
           "n_layers": art.model_config.n_layers, "host": platform.node(),
           "cpu_count": os.cpu_count(), "nvidia_device_node": _nvidia_device_present(),
           "nvidia_smi": nvidia_smi()}
    try:
        import tensorflow as tf
    except ImportError as exc:  # still worth knowing: the NumPy step on this machine
        out["error"] = f"tensorflow not installed ({exc}); pip install -e .[train]"
        np_b = NumpyBackend(art)
        out["numpy_ms_per_step"] = {str(b): round(time_steps(np_b, b, args.steps, vocab) * 1e3, 4)
                                    for b in BATCHES}
        print(json.dumps(out))
        return out
    from serving.tf_backend import TFBackend

    gpus = tf.config.list_physical_devices("GPU")
    out |= {"tensorflow": tf.__version__, "tf_built_with_cuda": tf.test.is_built_with_cuda(),
            "tf_gpus": [g.name for g in gpus], "gpu_visible": bool(gpus)}
    if not gpus:
        out["note"] = ("TensorFlow sees no GPU (tensorflow-cpu, or no CUDA libraries): "
                       "the tensorflow figures below are TensorFlow on the CPU")
    print(json.dumps({k: out[k] for k in ("nvidia_smi", "tensorflow", "gpu_visible")}))
    tf_b, np_b = TFBackend(art), NumpyBackend(art)
    out["tf_device"] = tf_b.device
    out["max_abs_logit_diff"] = diff = equivalence(tf_b, np_b, vocab)
    out["equivalent_1e-4"] = diff < TOLERANCE
    print(f"logits: max |TF - NumPy| = {diff:.2e} on {tf_b.device}", flush=True)
    out["steps"] = {}
    cores = blas_threads.cores()
    for batch in BATCHES:
        blas_threads.policy(1).tick("bench")
        t_np = time_steps(np_b, batch, args.steps, vocab)
        # What the engine's "auto" BLAS threads use on an idle machine: every core.
        blas_threads.policy(cores).tick("bench")
        t_all = time_steps(np_b, batch, args.steps, vocab)
        blas_threads.policy(1).tick("bench")
        t_tf = time_steps(tf_b, batch, args.steps, vocab)
        out["steps"][str(batch)] = {
            "numpy_ms": round(t_np * 1e3, 4), "tensorflow_ms": round(t_tf * 1e3, 4),
            "numpy_all_cores_ms": round(t_all * 1e3, 4), "blas_threads_all_cores": cores,
            "numpy_chars_per_s": round(batch / t_np), "tensorflow_chars_per_s": round(batch / t_tf),
            "tf_speedup": round(t_np / t_tf, 2)}
        print(f"batch {batch:>3}: NumPy {t_np * 1e3:8.3f} ms/step ({t_all * 1e3:.3f} on {cores} "
              f"BLAS threads), TF {t_tf * 1e3:8.3f} ms/step ({batch / t_tf:,.0f} chars/s)",
              flush=True)
    out["busy_core"] = busy_core(np_b, args.steps, vocab, cores)
    print(json.dumps(out))
    return out


def busy_core(np_b, steps: int, vocab: int, cores: int, batch: int = 64) -> dict:
    """The NumPy step at ``batch`` while another process keeps one core busy, on one BLAS
    thread and on one per core: why the engine's "auto" policy drops to one thread then."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        blas_threads.policy(1).tick("bench")
        one = time_steps(np_b, batch, steps, vocab)
        blas_threads.policy(cores).tick("bench")
        every = time_steps(np_b, batch, steps, vocab)
    finally:
        hog.kill()
        hog.wait()
        blas_threads.policy(1).tick("bench")
    print(f"batch {batch:>3}, one core busy elsewhere: NumPy {one * 1e3:.3f} ms/step on 1 BLAS "
          f"thread, {every * 1e3:.3f} on {cores}", flush=True)
    return {"batch": batch, "numpy_ms_1_thread": round(one * 1e3, 4),
            f"numpy_ms_{cores}_threads": round(every * 1e3, 4)}


if __name__ == "__main__":
    main()
