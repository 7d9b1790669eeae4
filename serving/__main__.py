"""``python -m serving``: the inference service (``serving/service.py``).

    python -m serving [--host 127.0.0.1] [--port 8081] [--config config.toml]
"""
import sys

from serving.service import main

sys.exit(main())
