"""What a test can read about a server process from /proc."""

from __future__ import annotations

import os
from pathlib import Path


def established_per_worker(worker_pids: list[int], port: int) -> dict[int, int]:
    """How many established connections on ``port`` each worker holds, read from /proc."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                    inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in worker_pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        held = 0
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts
