"""Helpers of `scripts/bench sandbox` (standard library only).

  bench.py probe get|signup URL RATE   requests at RATE per second until SIGTERM, then one JSON
                                       summary on stdout
  bench.py snapshot FIELD              reads `triad status --json` on stdin, prints FIELD:
                                       healthy (healthy targets), desired, endpoint, quiet-az
                                       (an AZ holding no database node), primary-az
  bench.py drill REPORT WINDOW         one table row from a GameDay report.json, with the
                                       expected failures: the AZ's share of WINDOW seconds of
                                       the probe's steady-state requests
  bench.py outage PROBE_JSON           the write outage line from a signup probe's summary
"""

import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor


def probe(mode, url, rate):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    results = []  # (sent, done, ok)
    lock = threading.Lock()
    password = "bench-pass-1"

    def one():
        sent = time.monotonic()
        if mode == "signup":
            body = json.dumps({
                "email": f"b{uuid.uuid4().hex[:16]}@bench.example.com",
                "password": password, "first_name": "Bench", "last_name": "Mark",
            }).encode()
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"})
            expected = 201
        else:
            request = urllib.request.Request(url)
            expected = 200
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                ok = response.status == expected
        except (urllib.error.URLError, OSError, ValueError):
            ok = False
        with lock:
            results.append((sent, time.monotonic(), ok))

    period = 1.0 / rate
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        tick = started
        while not stop.is_set():
            pool.submit(one)
            tick += period
            stop.wait(max(0.0, tick - time.monotonic()))
    ended = time.monotonic()
    successes = sorted(done for _, done, ok in results if ok)
    gaps = [b - a for a, b in zip(successes, successes[1:])]
    json.dump({
        "mode": mode,
        "requests": len(results),
        "failed": sum(1 for r in results if not r[2]),
        "seconds": round(ended - started, 3),
        "longest_gap_between_successes_s": round(max(gaps), 3) if gaps else None,
    }, sys.stdout)
    print()


def snapshot(field):
    s = json.load(sys.stdin)
    azs = s.get("azs", [])
    if field == "healthy":
        print(sum(1 for a in azs for t in a.get("targets", []) if t.get("state") == "healthy"))
    elif field == "desired":
        print((s.get("capacity") or {}).get("desired", 0))
    elif field == "endpoint":
        print(s.get("endpoint") or "")
    elif field == "quiet-az":
        print(next((a["az"] for a in azs if not a.get("database")), azs[-1]["az"]))
    elif field == "primary-az":
        print(next((a["az"] for a in azs
                    if (a.get("database") or {}).get("role") == "primary"), ""))
    else:
        sys.exit(f"unknown field {field}")


def drill(path, window):
    r = json.load(open(path))
    record = r["record"]
    inject = record.get("inject_at")
    steady = [p for p in record["probe"] if inject is None or p["second"] < inject]
    # Requests per second in the steady state, as the probe actually sent them.
    per_second = sum(p["ok"] + sum(p["failed"].values()) for p in steady) / max(1, len(steady))
    dip = r["capacity_dip"].get(record["az"], {"steady": 0})
    steady_total = sum(d["steady"] for d in r["capacity_dip"].values())
    share = dip["steady"] / steady_total if steady_total else 0
    expected = per_second * float(window) * share
    ratio = f"{r['failed_requests'] / expected:.2f}" if expected else "n/a"
    secs = lambda v: "—" if v is None else f"{v} s"
    print(f"{record['fault']:<14} {secs(r['time_to_detect_s']):>8} {secs(r['time_to_recover_s']):>9}"
          f" {r['failed_requests']:>8} of {r['requests_during']:<6} {expected:>9.1f}"
          f"  x{ratio:<6} {r['verdict']}")


def outage(path):
    p = json.load(open(path))
    gap = p["longest_gap_between_successes_s"]
    print(f"{'—' if gap is None else f'{gap:.2f} s'} without an acknowledged signup"
          f" (signups failed: {p['failed']} of {p['requests']})")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "probe":
        probe(args[0], args[1], float(args[2]))
    elif command == "snapshot":
        snapshot(args[0])
    elif command == "drill":
        drill(args[0], args[1])
    elif command == "outage":
        outage(args[0])
    else:
        sys.exit(__doc__)
