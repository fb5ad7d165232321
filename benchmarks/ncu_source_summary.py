"""Summary of an Nsight Compute source page (SASS), for comparing two kernels' instruction mix and stalls.

    ncu -i REPORT.ncu-rep --page source --csv --print-source sass > K.csv
    python benchmarks/ncu_source_summary.py K.csv [--units N] [--top 25] [--range LO:HI:NAME ...]

Prints, per opcode (the mnemonic before the first '.'), the warp-level instructions executed - divided by
--units (e.g. SM sub-partitions x work tiles, to read "instructions per tile and scheduler") - and the share
of the warp-state samples; the stall reasons' shares; the --top instructions by samples; and, for each
--range (hex byte offsets from the kernel's first instruction), its instructions and samples by reason.
"""
import argparse
import collections
import csv


def load(path):
    rows = list(csv.reader(open(path)))
    head = rows[1]
    col = {name: i for i, name in enumerate(head)}
    recs = []
    for r in rows[2:]:
        try:
            addr = int(r[col["Address"]], 16)
            n = int(r[col["Instructions Executed"]] or 0)
        except (ValueError, IndexError):
            continue
        stalls = {c[6:]: int(r[i] or 0) for c, i in col.items() if c.startswith("stall_") and "Not Issued" not in c}
        recs.append((addr, r[col["Source"]].strip(), n, int(r[col["Warp Stall Sampling (All Samples)"]] or 0), stalls))
    base = recs[0][0]
    return rows[0][1], [(a - base, s, n, smp, st) for a, s, n, smp, st in recs]


def opcode(src):
    words = src.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].split(".")[0] if words else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--units", type=float, default=1.0, help="divide instruction counts by this")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--range", action="append", default=[], metavar="LO:HI:NAME")
    args = ap.parse_args()
    name, recs = load(args.csv)
    n_all = sum(r[2] for r in recs)
    s_all = sum(r[3] for r in recs) or 1
    print(f"# {name[:160]}")
    print(f"instructions executed (warp level) {n_all:,}, / units {n_all / args.units:,.1f}; samples {s_all:,}")
    by_n, by_s = collections.Counter(), collections.Counter()
    reasons = collections.Counter()
    for _, src, n, smp, st in recs:
        by_n[opcode(src)] += n
        by_s[opcode(src)] += smp
        reasons.update(st)
    print("\n| opcode | per unit | % inst | % samples |\n|---|---|---|---|")
    for op, n in by_n.most_common(30):
        print(f"| {op} | {n / args.units:,.1f} | {100 * n / n_all:.1f} | {100 * by_s[op] / s_all:.1f} |")
    shares = ", ".join(f"{k} {100 * v / s_all:.1f}" for k, v in reasons.most_common(12) if v)
    print("\nstall reasons (% of samples): " + shares)
    print(f"\ntop {args.top} instructions by samples (offset, executed, % samples, source):")
    for a, src, n, smp, _ in sorted(recs, key=lambda r: -r[3])[:args.top]:
        print(f"  {a:06x} {n:12,d} {100 * smp / s_all:5.2f}%  {src[:70]}")
    for spec in args.range:
        lo, hi, label = spec.split(":", 2)
        lo, hi = int(lo, 16), int(hi, 16)
        sel = [r for r in recs if lo <= r[0] < hi]
        st = collections.Counter()
        for r in sel:
            st.update(r[4])
        n = sum(r[2] for r in sel)
        s = sum(r[3] for r in sel)
        print(f"range {label} [{lo:x}, {hi:x}): inst / units {n / args.units:,.1f}, samples {100 * s / s_all:.1f}%: " +
              ", ".join(f"{k} {100 * v / s_all:.1f}" for k, v in st.most_common(6) if v))


if __name__ == "__main__":
    main()
