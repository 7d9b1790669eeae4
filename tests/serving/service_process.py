"""``python -m serving`` in a child process on a free loopback port, for the
tests that need the real program: its logging set-up, its server and its memory.

    with ServiceProcess(bot.config, tmp_path / "service.log") as svc:
        requests.post(svc.url + "/v1/generate", ...); svc.rss_kb(); svc.log_text()
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_S = 60.0  # generous: imports and model loads on a busy 2-core machine


class ServiceProcess:
    def __init__(self, config: Path, log: Path, **env: str):
        self.config, self.log, self.env = config, log, env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> ServiceProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.env)
        env.setdefault("MODEL_REGISTRY", str(self.log.parent / "empty-registry"))
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", "0",
             "--config", str(self.config)], cwd=ROOT, env=env, stdout=self._out,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while not (found := re.search(r'listening on (http://[^\s"]+)', self.log_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"the service did not start:\n{self.log_text()}")
            time.sleep(0.05)
        self.url = found.group(1)
        return self

    def __exit__(self, *exc) -> None:
        """SIGTERM, as honcho or systemd stop it; killed if it does not leave in 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_kb(self) -> int:
        """Resident memory of the service process (Linux /proc), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")
