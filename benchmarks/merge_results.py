#!/usr/bin/env python
"""Merge the results.json of several bench.py runs (e.g. one device call per op group) into one report.

    python benchmarks/merge_results.py OUT_DIR run1/results.json run2/results.json [...]

Writes OUT_DIR/results.md, results.json and speedup_vs_density.png, as bench.py does. A case measured in
a later run replaces the same case (op, variant, workload, block, density) of an earlier one, and an
error / skip note of an earlier run is dropped when a later run measured that case. Environment and
ceilings are taken from the first run; every run's command and device are listed, so a reader can see
that the merged rows come from different processes (compare rows only within one device name).
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import report  # noqa: E402


def case_key(c):
    return (c.get("op"), c.get("variant"), c.get("workload"), c.get("block"), c.get("density"),
            c.get("layout"), c.get("new_tokens"), c.get("num_splits"))


def err_prefix(c):
    """The prefix bench.py gives error notes of this case ('1d gqa P2 d=0.5')."""
    if c.get("density") is None or c.get("variant") is None:
        return None
    return f"{c['op']} {c['variant']} {c['workload']} d={c['density']}"


def merge(runs):
    out = dict(runs[0])
    cases, order = {}, []
    checks, notes, first_calls, errors = [], [], {}, []
    for r in runs:
        for c in r.get("cases", []):
            k = case_key(c)
            if k not in cases:
                order.append(k)
            cases[k] = c
        checks += r.get("checks", [])
        notes += r.get("notes", [])
        first_calls.update(r.get("first_calls", {}))
    for i, r in enumerate(runs):
        later = [c for rr in runs[i + 1:] for c in rr.get("cases", [])]
        done = {p for p in map(err_prefix, later) if p}
        errors += [e for e in r.get("errors", []) if e.split(":")[0] not in done]
    out.update(cases=[cases[k] for k in order], checks=checks, notes=notes, first_calls=first_calls,
               errors=errors)
    devices = {r.get("env", {}).get("device_name") for r in runs}
    out["args"] = " + ".join(r.get("args", "?") for r in runs)
    out["notes"] = out["notes"] + [
        f"merged from {len(runs)} bench.py runs (separate processes and device calls; ceilings and environment "
        f"from the first, dense-FA rows from the last that measured them): {out['args']}"]
    if len(devices) > 1:
        out["notes"] = out["notes"] + [f"merged runs used different devices: {sorted(map(str, devices))}"]
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    runs = [json.load(open(p)) for p in argv[2:]]
    msg = report.write_outputs(merge(runs), argv[1])
    print(f"wrote {argv[1]}/results.md ({len(runs)} runs); {msg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
