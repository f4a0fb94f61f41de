"""The table of `scripts/bench fidelity` (standard library only).

  bench.py WORK ROUNDS   reads WORK/r<round>-<clock>-<fault>/report.json and prints, per fault
                         and measure: the fast run's measurement and AWS prediction, the aws
                         run's measurement, and prediction / measurement (median min-max over
                         rounds)
"""

import json
import statistics
import sys


def report(work, round_, clock, fault):
    try:
        return json.load(open(f"{work}/r{round_}-{clock}-{fault}/report.json"))
    except (OSError, ValueError):
        return None


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}" if med < 10 else f"{med:.1f}"
    return f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


def main(work, rounds):
    print(f"{'fault':<13} {'measure':<8} {'fast here':>10} {'→ on AWS':>9} {'aws run':>8} {'ratio':>8}  verdicts (fast/aws)")
    for fault in ("terminate-az", "az-outage"):
        for measure in ("detect", "recover"):
            key = f"time_to_{measure}_s"
            here, predicted, measured, ratios, verdicts = [], [], [], [], []
            for r in range(1, rounds + 1):
                fast = report(work, r, "fast", fault)
                aws = report(work, r, "aws", fault)
                f_here = fast.get(key) if fast else None
                f_pred = (fast.get("on_aws") or {}).get(key) if fast else None
                a_meas = aws.get(key) if aws else None
                here.append(f_here)
                predicted.append(f_pred)
                measured.append(a_meas)
                if f_pred is not None and a_meas:
                    ratios.append(f_pred / a_meas)
                verdicts.append(f"{fast['verdict'] if fast else '—'}/{aws['verdict'] if aws else '—'}")
            print(f"{fault:<13} {measure:<8} {spread(here):>8} s {spread(predicted):>7} s"
                  f" {spread(measured):>6} s {spread(ratios):>8}  {' '.join(verdicts)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
