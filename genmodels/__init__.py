"""Style models: vocabulary, artifacts, the NumPy step kernel and the sampler.

Importing this package caps OpenBLAS at one thread unless the environment already says
otherwise: a single stream's step is a handful of small matrix-vector products, which
run faster on one core, and 5-10x slower when a second BLAS thread has to wait for a
core that is busy with other work (measured in bench/sampling.py).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
