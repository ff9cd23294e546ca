"""What a benchmark ran on, written beside its numbers (these machines are shared and noisy)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def describe_machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        mem = f", {total_kb / 1024 / 1024:.0f} GiB RAM"
    one, five, fifteen = os.getloadavg()
    load = f", load average {one:.2f} {five:.2f} {fifteen:.2f}"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}{load}; Python {platform.python_version()}"
        f" ({sys.implementation.name}), {platform.system()} {platform.release()}"
    )
