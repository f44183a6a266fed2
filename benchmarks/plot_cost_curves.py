"""Plot the measured cost curves of one model call against its batch (docs/pays.md).

    python benchmarks/plot_cost_curves.py [--csv docs/img/pays/cost_curves.csv] [--out docs/img/pays/cost_curves.png]

Measures nothing: it draws the numbers of the CSV, each row naming its machine and the page
that reports it (docs/benchmarks/gpu.md, docs/reference-figures.md).
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"cpu-digits-eager": ("tab:red", "o", "digits UNet, CPU (2-core EPYC, 1 thread), eager"),
         "h100-digits-graph": ("tab:blue", "s", "digits UNet, H100, CUDA graph"),
         "h100-digits-eager": ("tab:blue", None, "digits UNet, H100, eager (7.5-12 ms range)"),
         "h100-sd2-fp16": ("tab:green", "^", "SD-2-size UNet 865 M, H100, fp16")}


def main(csv_path: Path, out: Path) -> None:
    curves = defaultdict(list)
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            curves[row["curve"]].append((int(row["batch"]), float(row["ms_low"]), float(row["ms_high"])))
    fig, (ax_ms, ax_rel) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in curves.items():
        color, marker, label = STYLE[name]
        b, lo, hi = (list(v) for v in zip(*sorted(points)))
        if marker is None:  # a measured range, not points
            ax_ms.fill_between(b, lo, hi, color=color, alpha=0.15, label=label)
            continue
        ax_ms.plot(b, lo, marker=marker, color=color, label=label)
        ax_rel.plot([x / b[0] for x in b], [v / lo[0] for v in lo], marker=marker, color=color, label=label)
    ax_rel.plot([1, 1024], [1, 1], color="gray", ls=":", label="free batching (flat)")
    ax_rel.plot([1, 1024], [1, 1024], color="gray", ls="--", label="no gain from batching (linear)")
    for ax in (ax_ms, ax_rel):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax_ms.set_xlabel("model batch (window x samples)")
    ax_rel.set_xlabel("batch / smallest batch measured")
    ax_ms.set_ylabel("ms per call")
    ax_ms.set_title("cost of one model call")
    ax_rel.set_ylabel("cost / cost of the smallest batch")
    ax_rel.set_title("relative cost: where a wide window is cheap")
    ax_ms.legend(fontsize=7, loc="upper left")
    ax_rel.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=Path("docs/img/pays/cost_curves.csv"))
    parser.add_argument("--out", type=Path, default=Path("docs/img/pays/cost_curves.png"))
    args = parser.parse_args()
    main(args.csv, args.out)
