"""Style models: their format (vocabulary, configs, artifacts), the NumPy step kernel
and sampling. Serving them lives in ``serving/``, training them in ``training/``.

Importing this package starts OpenBLAS at one thread unless the environment already
says otherwise: a second BLAS thread that has to wait for a core busy with other work
makes a step slower, not faster. The engine and the sampler raise the count while the
rest of the machine leaves the cores idle (``genmodels/blas_threads.py``).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
