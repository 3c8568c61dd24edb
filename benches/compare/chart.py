#!/usr/bin/env python3
"""The PNG chart of docs/performance.md from run.py's JSON: tokens/s per engine and benchmark.

    $REF_DIR/venv/bin/pip install matplotlib
    $REF_DIR/venv/bin/python benches/compare/chart.py $REF_DIR/compare-results.json docs/performance.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"quill": "#2b6cb0", "ctranslate2": "#dd6b20", "llama.cpp": "#38a169"}


def main():
    data = json.load(open(sys.argv[1]))
    rows = [r for r in data["results"] if "tok_s_median" in next(iter(r.get("engines", {"-": {}}).values()))]
    rows = [r for r in rows if r["threads"] == 1]
    engines = [e for e in COLORS if any(e in r["engines"] for r in rows)]
    labels = [r["bench"].replace("b1 ", "").replace(" batch 32", "\nbatch 32").replace(" beam 4", ", beam 4")
              for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=100)
    width = 0.8 / len(engines)
    for i, e in enumerate(engines):
        xs, ys = [], []
        for j, r in enumerate(rows):
            if e in r["engines"]:
                xs.append(j + (i - (len(engines) - 1) / 2) * width)
                ys.append(r["engines"][e]["tok_s_median"])
        bars = ax.bar(xs, ys, width, label=e, color=COLORS[e])
        for b, y in zip(bars, ys):
            ax.text(b.get_x() + b.get_width() / 2, y, "%.0f" % y, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("generated tokens/s (log scale), 1 thread")
    env = data["env"]
    ax.set_title("quill vs peers, median of %d runs, %s, %d vCPUs, commit %s" % (
        rows[0]["reps"], env["cpu"], env["vcpus"], env["commit"]), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
