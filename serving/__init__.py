"""Serving the style models: the client interface the bot calls (``serving.client``), the
batching engine (``engine``, ``batch``), its backends, the HTTP service and its client,
the service's metrics and request checks.

``python -m serving`` runs the inference service (``serving/service.py``).

Importing this package first imports ``genmodels``, which starts OpenBLAS at one thread
unless the environment says otherwise; that has to happen before NumPy loads.
"""
import genmodels  # noqa: F401  the BLAS thread default, before NumPy loads
