"""Helpers of `scripts/bench console` (standard library only).

  bench.py healthy                  reads `triad status --json` on stdin; prints "HEALTHY DESIRED"
                                    (healthy targets, desired capacity)
  bench.py cpu PID SECONDS          CPU time (user + system, all threads) and RSS of process PID
                                    over the next SECONDS; prints "CPU_SECONDS WALL_SECONDS
                                    RSS_KIB HWM_KIB"
  bench.py poll SECONDS INTERVAL COMMAND...
                                    runs COMMAND every INTERVAL seconds (on a fixed tick) for
                                    SECONDS; prints "CPU_SECONDS WALL_SECONDS RUNS PEAK_RSS_KIB"
                                    of the commands (their children included)
"""

import json
import os
import resource
import subprocess
import sys
import time


def healthy():
    s = json.load(sys.stdin)
    targets = [t for a in s.get("azs", []) for t in a.get("targets", [])]
    print(sum(1 for t in targets if t.get("state") == "healthy"),
          (s.get("capacity") or {}).get("desired", 0))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after it do not.
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); fields[0] is field 3 (state).
    return int(fields[11]) + int(fields[12])


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu(pid, seconds):
    tick = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    time.sleep(float(seconds))
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    print(f"{(c1 - c0) / tick:.3f} {t1 - t0:.3f} {status_kib(pid, 'VmRSS')} {status_kib(pid, 'VmHWM')}")


def poll(seconds, interval, command):
    seconds, interval = float(seconds), float(interval)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    runs = 0
    while time.monotonic() - start < seconds:
        subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        runs += 1
        next_tick = start + runs * interval
        time.sleep(max(0.0, next_tick - time.monotonic()))
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{used:.3f} {wall:.3f} {runs} {after.ru_maxrss}")


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "healthy":
        healthy()
    elif what == "cpu":
        cpu(*args)
    elif what == "poll":
        poll(args[0], args[1], args[2:])
    else:
        sys.exit(f"unknown helper {what}")
