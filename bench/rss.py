"""Peak memory of a process tree, sampled from /proc (the benchmarks' figure for memory)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_sampling_rss(command: list[str], env: dict[str, str] | None = None) -> tuple[str, dict[str, int]]:
    """Run ``command`` in a fresh process and sample the RSS (KB) of it and all its descendants every 20 ms:
    ``tree`` (their sum), ``main`` (the process itself) and ``process`` (the largest one). Returns its
    stdout and the peaks; raises RuntimeError with its stderr when it fails."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peaks = {"tree": 0, "main": 0, "process": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = _descendants(process.pid)
            sizes = [_rss_kb(p) for p in pids]
            peaks["tree"] = max(peaks["tree"], sum(sizes))
            peaks["main"] = max(peaks["main"], sizes[0] if sizes else 0)
            peaks["process"] = max(peaks["process"], max(sizes, default=0))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"conversion failed: {stderr[-2000:]}")
    return stdout, peaks
