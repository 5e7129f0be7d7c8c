#!/usr/bin/env python3
"""Plots a bench-broker.sh output directory as an SVG: throughput per configuration (median
and range of the runs) and paced-latency percentiles. No dependencies beyond Python.
    scripts/plot-broker.py OUT_DIR > plot.svg"""

import glob
import json
import os
import sys

out = sys.argv[1]
configs = sorted({os.path.basename(p).rsplit("-", 2)[0] for p in glob.glob(f"{out}/*-produce-*.json")})


def runs(config, kind):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{config}-{kind}-*.json"))]


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


W, H, M = 980, 420, 60
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
# Left: throughput bars (produce, consume), M msgs/s.
left_w = 520
top = 40
plot_h = H - top - 90
peak = max(max(r["msgs_per_sec"] for r in runs(c, k)) for c in configs for k in ("produce", "consume")) / 1e6
scale = plot_h / (peak * 1.1)
svg.append(f'<text x="{M}" y="22" font-size="14">Throughput, M msgs/s of 200 B (median bar, run range line)</text>')
group_w = (left_w - M) / len(configs)
for i, config in enumerate(configs):
    for j, (kind, colour) in enumerate((("produce", "#4878a8"), ("consume", "#e0803a"))):
        values = [r["msgs_per_sec"] / 1e6 for r in runs(config, kind)]
        x = M + i * group_w + 8 + j * (group_w / 2 - 6)
        w = group_w / 2 - 12
        h = median(values) * scale
        y0 = top + plot_h
        svg.append(f'<rect x="{x:.1f}" y="{y0 - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{colour}"/>')
        cx = x + w / 2
        svg.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y0 - min(values) * scale:.1f}" y2="{y0 - max(values) * scale:.1f}" stroke="black"/>')
        svg.append(f'<text x="{cx:.1f}" y="{y0 - h - 4:.1f}" text-anchor="middle">{median(values):.1f}</text>')
    shards, pinning, fsync, acks = config.split("-")
    cx = M + i * group_w + group_w / 2
    svg.append(f'<text x="{cx:.1f}" y="{top + plot_h + 15}" text-anchor="middle" font-size="10">{shards[-1]} shard{"s" if shards[-1] != "1" else ""}, {pinning}</text>')
    svg.append(f'<text x="{cx:.1f}" y="{top + plot_h + 28}" text-anchor="middle" font-size="10">fsync {fsync.replace("acksall", "acks-all")}, acks={acks.replace("acks", "").replace("all", "all")}</text>')
for target, name in ((2.5, "aim produce 2.5"), (5.5, "aim consume 5.5")):
    y = top + plot_h - target * scale
    svg.append(f'<line x1="{M}" x2="{left_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#999" stroke-dasharray="4 3"/>')
    svg.append(f'<text x="{M - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666" font-size="9">{target}</text>')
svg.append(f'<line x1="{M}" x2="{left_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="black"/>')
svg.append(f'<text x="{M + 200}" y="{H - 31}" fill="#666">dashed: the aims, 2.5 (produce) and 5.5 (consume)</text>')
svg.append(f'<rect x="{M}" y="{H - 40}" width="10" height="10" fill="#4878a8"/><text x="{M + 14}" y="{H - 31}">produce</text>')
svg.append(f'<rect x="{M + 80}" y="{H - 40}" width="10" height="10" fill="#e0803a"/><text x="{M + 94}" y="{H - 31}">consume</text>')
# Right: paced latency percentiles (log scale), 250,000 msgs/s.
x0, x1 = 590, W - 30
svg.append(f'<text x="{x0}" y="22" font-size="14">Produce latency at 250,000 msgs/s (us, log)</text>')
quantiles = ["p50", "p90", "p99", "p999"]
lo, hi = 100, 10000


def ly(v):
    import math
    v = min(max(v, lo), hi)
    return top + plot_h - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_h


for v in (100, 300, 1000, 3000, 10000):
    svg.append(f'<line x1="{x0}" x2="{x1}" y1="{ly(v):.1f}" y2="{ly(v):.1f}" stroke="#eee"/><text x="{x0 - 4}" y="{ly(v) + 4:.1f}" text-anchor="end">{v}</text>')
svg.append(f'<line x1="{x0}" x2="{x1}" y1="{ly(1000):.1f}" y2="{ly(1000):.1f}" stroke="#c33" stroke-dasharray="4 3"/><text x="{x1}" y="{ly(1000) - 3:.1f}" text-anchor="end" fill="#c33">aim: p99 under 1 ms</text>')
colours = ["#4878a8", "#e0803a", "#5a9e4b", "#8a5aa8"]
step = (x1 - x0 - 20) / (len(quantiles) - 1)
for c, config in enumerate(configs):
    points = []
    for q, quantile in enumerate(quantiles):
        value = median([r["latency_us"][quantile] for r in runs(config, "paced")])
        points.append(f"{x0 + 10 + q * step:.1f},{ly(value):.1f}")
    svg.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colours[c % 4]}" stroke-width="2"/>')
    svg.append(f'<text x="{x0 + 10}" y="{H - 60 + c * 13}" fill="{colours[c % 4]}" font-size="9">{config}</text>')
for q, quantile in enumerate(quantiles):
    svg.append(f'<text x="{x0 + 10 + q * step:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{quantile}</text>')
svg.append("</svg>")
print("\n".join(svg))
