"""Helpers shared by the benchmark scripts: machine facts, load, memory, summaries.

Not part of the package: scripts in this folder import it as ``_common`` (they put their own
folder on ``sys.path``).
"""

import json
import os
import platform
import time

import numpy as np
import torch

__all__ = ["load_average", "machine_info", "memory_status", "summary", "rounded", "say",
           "write_json", "Timer"]


def load_average():
    """The 1, 5 and 15-minute load averages (rounded), or None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device):
    """Platform, CPU, Python, torch, threads and (CUDA) GPU of this run."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "load_average": load_average(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def memory_status():
    """Current and peak resident set size of this process in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        return None


def summary(values):
    """Mean and standard deviation of a sequence, as floats."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def rounded(values, digits=4):
    """A flat list of rounded floats (for compact JSON)."""
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


def say(verbose):
    """A print function that is silent when ``verbose`` is falsy."""
    def _say(*args):
        if verbose:
            print(*args, flush=True)
    return _say


def write_json(obj, path):
    """Write ``obj`` as indented JSON, atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


class Timer:
    """Wall-clock seconds of a ``with`` block (synchronising CUDA at both ends)."""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.seconds = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.start
        return False
