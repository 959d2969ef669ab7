"""The interpreter the measured bot runs on: what the Docker image installs, nothing more.

The test environment also holds Synapse (Twisted), import-linter (rich), pytest…, and some
libraries import what they find: structlog loads rich for its tracebacks, ~4 MB resident that
users never carry. Memory and CPU are therefore measured on a venv built from
`requirements.lock` alone (the image's runtime dependencies), the bot's code taken from the
repository (PYTHONPATH), as the image runs it. Built once per lock file, then reused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tchap-bot-bench"


def production_python() -> str:
    """A venv with exactly the runtime dependencies of the image; created on first use."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    venv = _cache_root() / f"runtime-{digest}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if not done.exists():
        print(f"building the runtime venv for the measured bot ({venv})…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(LOCK)],
            check=True,
        )
        done.touch()
    return str(python)
