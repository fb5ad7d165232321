"""Plot benchmarks/results/v1_h100_summary.json: speedup of seer_attn over the seed (ANCHORS.md) and
FlexAttention for the 2D op, forward and forward+backward, against density.
    python benchmarks/plot_summary.py benchmarks/results/v1_h100_summary.json out.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    r = json.load(open(src))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, w in zip(axes, ("P1", "P2")):
        ours_f = r["ours"]["2d_fwd"][w]
        ours_fb = r["ours"]["2d_fb_atomic_v2"][w]
        ds = sorted(ours_f, key=float)
        x = [float(d) for d in ds]
        seed_f = [r["seed_anchor"]["2d_fwd"][w][d] / ours_f[d] for d in ds]
        seed_fb = [r["seed_anchor"]["2d_fb"][w][d] / ours_fb[d] for d in ds]
        flex_f = [r["flex_measured"]["2d_fwd"][w][d] / ours_f[d] for d in ds]
        flex_fb_anchor = [r["flex_anchor_fb"][w][d] / ours_fb[d] for d in ds]
        ax.plot(x, seed_f, "o-", label="vs seed, fwd")
        ax.plot(x, seed_fb, "o--", label="vs seed, fwd+bwd")
        ax.plot(x, flex_f, "s-", label="vs flex (this run), fwd")
        ax.plot(x, flex_fb_anchor, "s--", label="vs flex (anchor cfg), fwd+bwd")
        fb_mt = r["flex_measured"].get("2d_fb_max_autotune", {}).get(w, {})
        if fb_mt:
            xs = [float(d) for d in sorted(fb_mt, key=float)]
            ax.plot(xs, [fb_mt[d] / ours_fb[d] for d in sorted(fb_mt, key=float)], "^:",
                    label="vs flex (max-autotune), fwd+bwd")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in x])
        ax.set_xlabel("density (kept fraction of causal blocks)")
        ax.set_title(f"2D block-sparse, {w}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("speedup (their time / ours), >1 = faster")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(r["device"], fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
