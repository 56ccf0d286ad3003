#!/usr/bin/env python3
"""Plot INVITE->200 latency (p50 and p99) against offered call rate, per proxy.

Reads the JSON written by `bench/compare/compare.py --sweep` (meta.kind ==
"latency-sweep": runs[] of {scenario, proxy, round, points[] of {offered_rate,
invite_200_p50_us, invite_200_p99_us, calls_failed, latency_resolution_us}}), takes for
each proxy and offered rate the median over rounds, and writes one PNG with a panel per
scenario: p99 solid, p50 dashed, one colour per proxy. A point whose runs had failed
calls is drawn with an "x" marker: its latency is that of the calls that succeeded.

Usage:
  plot_latency.py RESULTS.json [MORE.json ...] -o latency.png [--scenario NAME] [--linear]
  plot_latency.py --self-test OUT.png   # synthetic data, titled as such; checks the plotter

Needs matplotlib (pip install matplotlib); exits 2 with that message if it is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

COLOURS = {"ringsip": "#c0392b", "kamailio": "#2471a3"}


def load_runs(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    runs, metas = [], []
    for p in paths:
        doc = json.loads(p.read_text())
        meta = doc.get("meta", {})
        if meta.get("kind") != "latency-sweep":
            raise ValueError(f"{p}: not a latency sweep (meta.kind = {meta.get('kind')!r}); "
                             "produce one with compare.py --sweep")
        metas.append(meta)
        runs.extend(doc.get("runs", []))
    return runs, metas


def series(runs: list[dict], scenario: str) -> dict:
    """{proxy: [(rate, p50_us, p99_us, any_failed)]} sorted by rate, medians over rounds."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.get("scenario") != scenario:
            continue
        for pt in run.get("points", []):
            p50, p99 = pt.get("invite_200_p50_us"), pt.get("invite_200_p99_us")
            if p50 is None or p99 is None or (isinstance(p99, float) and math.isnan(p99)):
                continue
            acc[run["proxy"]][float(pt["offered_rate"])].append((p50, p99, pt.get("calls_failed", 0)))
    out = {}
    for proxy, by_rate in acc.items():
        rows = []
        for rate in sorted(by_rate):
            vals = by_rate[rate]
            rows.append((rate, statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals),
                         any(v[2] for v in vals)))
        out[proxy] = rows
    return out


def plot(runs: list[dict], metas: list[dict], out: Path, scenarios: list[str], linear: bool, title_note: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_latency: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        sys.exit(2)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6.4 * len(scenarios), 4.8), squeeze=False)
    generators = sorted({m.get("generator", "?") for m in metas})
    resolution = sorted({pt.get("latency_resolution_us", 1) for r in runs for pt in r.get("points", [])})
    for ax, sc in zip(axes[0], scenarios):
        data = series(runs, sc)
        if not data:
            ax.text(0.5, 0.5, f"no data for {sc}", ha="center", va="center", transform=ax.transAxes)
        for proxy, rows in sorted(data.items()):
            colour = COLOURS.get(proxy)
            rates = [r[0] for r in rows]
            ax.plot(rates, [r[2] / 1000 for r in rows], "-", color=colour, label=f"{proxy} p99")
            ax.plot(rates, [r[1] / 1000 for r in rows], "--", color=colour, label=f"{proxy} p50")
            for rate, p50, p99, failed in rows:
                marker = "x" if failed else "o"
                ax.plot([rate, rate], [p50 / 1000, p99 / 1000], marker, color=colour, linestyle="none", markersize=5)
        ax.set_title(sc)
        ax.set_xlabel("offered load (calls/s)")
        ax.set_ylabel("INVITE → 200 (ms)")
        if not linear:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    note = f"generator: {', '.join(generators)}; latency resolution: {', '.join(f'{r:g} µs' for r in resolution)}; "
    note += "medians over rounds; x = a run with failed calls"
    fig.suptitle((title_note + "\n" if title_note else "") + note, fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def self_test(out: Path) -> None:
    """Write synthetic sweep data to a temporary file, plot it, and check the PNG."""
    rnd = random.Random(7)
    runs = []
    for proxy, knee in (("ringsip", 9000.0), ("kamailio", 4000.0)):
        for rnd_no in (1, 2, 3):
            points = []
            for i in range(1, 11):
                rate = knee * 1.2 * i / 10
                base = 300.0 / max(0.05, 1 - min(rate / knee, 0.98))
                points.append({"offered_rate": rate, "invite_200_p50_us": base * rnd.uniform(0.9, 1.1),
                               "invite_200_p99_us": 4 * base * rnd.uniform(0.9, 1.1),
                               "calls_failed": 5 if rate > knee else 0, "latency_resolution_us": 1})
            runs.append({"scenario": "stateful-rr", "proxy": proxy, "round": rnd_no, "points": points})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "synthetic-sweep.json"
        src.write_text(json.dumps({"meta": {"kind": "latency-sweep", "generator": "synthetic"}, "runs": runs}))
        runs2, metas = load_runs([src])
    plot(runs2, metas, out, ["stateful-rr"], linear=False, title_note="SYNTHETIC TEST DATA — not a measurement")
    head = out.read_bytes()[:8]
    if head != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"self-test: {out} is not a PNG")
    print(f"self-test: wrote {out} ({out.stat().st_size} bytes)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="*", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("latency.png"))
    ap.add_argument("--scenario", action="append", help="scenario(s) to plot (default: all found)")
    ap.add_argument("--linear", action="store_true", help="linear latency axis (default: log)")
    ap.add_argument("--self-test", type=Path, metavar="OUT.png")
    a = ap.parse_args(argv)
    if a.self_test:
        self_test(a.self_test)
        return 0
    if not a.results:
        ap.error("give at least one results JSON (from compare.py --sweep)")
    try:
        runs, metas = load_runs(a.results)
    except (OSError, ValueError) as e:
        print(f"plot_latency: {e}", file=sys.stderr)
        return 2
    scenarios = a.scenario or sorted({r["scenario"] for r in runs})
    if not scenarios:
        print("plot_latency: the results hold no runs", file=sys.stderr)
        return 2
    plot(runs, metas, a.output, scenarios, a.linear)
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
