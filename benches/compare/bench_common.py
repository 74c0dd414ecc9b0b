"""What compare.py and modern.py share: logging, the relative error, timing statistics and the
run's provenance. Imported by path (both scripts run from any directory)."""
import os
import statistics
import subprocess
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def rel(x, y, ref):
    return float(np.abs(x - y).max() / np.abs(ref).max())


def stats(ts):
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "runs": ts}


def provenance(simattr, threads):
    """The CPU (its model name), cores, threads, the library versions, simattr's version and the
    commit measured."""
    import sentence_transformers
    import torch
    import transformers

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ver = subprocess.run([simattr, "--version"], capture_output=True, text=True)
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "simattr": ver.stdout.strip() if ver.returncode == 0 else None,
            "commit": git.stdout.strip() if git.returncode == 0 else None}
