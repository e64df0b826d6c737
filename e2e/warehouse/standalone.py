"""An `automq standalone` process (broker + query node) on free loopback ports, stopped with
Ctrl-C (SIGINT) or killed by PID."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from qnode import REPO, _TARGET, free_port

AUTOMQ_BIN = (_TARGET if _TARGET.is_absolute() else REPO / _TARGET) / "debug" / "automq"


class Standalone:
    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.kafka, self.mysql, self.http, self.qhttp = (free_port() for _ in range(4))
        self.proc = None
        self.log = self.data_dir.parent / "standalone.log"

    def start(self):
        path = Path(os.environ.get("AUTOMQ_BIN", AUTOMQ_BIN))
        if not path.is_file():
            pytest.fail(f"automq binary not found at {path}: cargo build -p automq", pytrace=False)
        self.proc = subprocess.Popen(
            [str(path), "standalone", "--data-dir", str(self.data_dir),
             "--kafka-listen", f"127.0.0.1:{self.kafka}", "--mysql-listen", f"127.0.0.1:{self.mysql}",
             "--http-listen", f"127.0.0.1:{self.http}", "--query-http-listen", f"127.0.0.1:{self.qhttp}"],
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True)
        banner = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"standalone exited early ({self.proc.poll()}); log: {self.log.read_text()[-2000:]}")
            banner.append(line)
            if line.startswith("Ctrl-C"):
                return "".join(banner)
        pytest.fail("standalone did not print its banner")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, out

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def mysql_cli(self, sql):
        r = subprocess.run(["mysql", "-h", "127.0.0.1", "-P", str(self.mysql), "-u", "root", "--batch",
                            "--skip-column-names", "-e", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout
