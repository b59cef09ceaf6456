#!/usr/bin/env python3
"""Render csi-load results as one self-contained HTML page (inline SVG plots),
optionally side by side with a baseline, and print the comparison table.

    report.py results.json [more.json | dir ...] [--baseline old.json | dir ...] -o report.html

Runs are matched to baseline runs by scenario name. Ratios are this run over
the baseline: for latencies, memory and CPU above 1 is worse, for rates
(`*per_s`) above 1 is better. This machine is noisy: treat differences under
~20 % as noise unless they repeat.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

KINDS = [("first_publish", "first publish"), ("republish", "republish"),
         ("unpublish", "unpublish"), ("teardown", "teardown unpublish")]
COLORS = {"first_publish": "#1f77b4", "republish": "#2ca02c", "unpublish": "#d62728", "teardown": "#9467bd",
          "driver": "#1f77b4", "provider": "#ff7f0e", "harness": "#7f7f7f", "live": "#2ca02c", "stale": "#d62728",
          "calls": "#9467bd"}
# The metrics printed in the comparison table (others are in the HTML page).
KEY_METRICS = [
    "first_publish.p50_ms", "first_publish.p99_ms", "first_publish.p999_ms", "first_publish.max_ms",
    "republish.p50_ms", "republish.p99_ms", "unpublish.p50_ms", "unpublish.p99_ms", "teardown.p99_ms",
    "calls_per_s", "cycles_per_s", "driver.rss_max_mib", "driver.hwm_mib", "driver.cpu_avg_pct",
    "driver.cpu_steady_pct", "provider.mount_calls", "propagation.all_seen_s", "propagation.p50_s",
    "errors", "verify_errors", "schedule_lag.p99_ms", "driver.cpu_per_call_us", "driver.cpu_per_pair_us", "harness.cpu_per_call_us",
]


# ---------------------------------------------------------------- loading

def load_runs(paths: list[str]) -> list[dict]:
    runs = []
    for p in paths:
        path = Path(p)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for f in files:
            with open(f) as fh:
                data = json.load(fh)
            if data.get("schema", "").startswith("csi-load/"):
                data["_file"] = str(f)
                runs.append(data)
            elif not path.is_dir():
                sys.exit(f"report.py: {f} is not a csi-load results file")
    return runs


def direction(metric: str) -> int:
    """+1: higher is better, -1: lower is better, 0: neither (counts)."""
    if metric.endswith("per_s"):
        return 1
    if metric.endswith((".count", ".created", ".peak", "mount_calls", "in_flight_max", "volumes_at_change",
                        "calls_sent", ".checked")):
        return 0
    return -1


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{max(1, digits - len(str(int(abs(v)))))}f}"


def errors_line(run: dict) -> str:
    """"errors: 3 (VERIFY_EMPTY 3)": failed calls of every kind by code (gRPC status or VERIFY_*)."""
    errors = run.get("errors")
    if errors is None:  # results from before csi-load counted errors by code
        total = sum(sum(c["errors"].values()) for c in run["calls"].values())
        return f"errors: {total} (by kind only)"
    codes = ", ".join(f"{code} {n}" for code, n in errors["by_code"].items())
    return f"errors: {errors['total']}" + (f" ({codes})" if codes else "")


def verification_line(run: dict) -> str:
    v = run.get("verification")
    if v is None:
        return "volumes not verified (results from an older csi-load)"
    what = f"{len(v['objects'])} objects, bytes and layout" if v.get("content_checked") else "layout only"
    every = "every one" if v["every"] == 1 else f"1 in {v['every']}"
    cost = f", {fmt(v['cpu_per_check_us'])} µs of harness CPU per check" if v.get("cpu_per_check_us") is not None else ""
    return f"verified {v['checked']} of {v['publishes_ok']} successful publishes ({every}; {what}){cost}"


def cpu_line(run: dict) -> str:
    cpu = run.get("cpu")
    if cpu is None:
        return ""
    lag = run.get("schedule_lag") or {}
    return (f"CPU per call: driver {fmt(cpu.get('driver_per_call_us'))} µs, harness {fmt(cpu.get('harness_per_call_us'))} µs"
            f" ({cpu['calls_sent']} calls); latency from the scheduled time, harness queueing p99"
            f" {fmt(lag['p99_us'] / 1000 if lag.get('p99_us') is not None else None)} ms")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---------------------------------------------------------------- console

def print_comparison(runs: list[dict], baselines: dict[str, dict]) -> None:
    for run in runs:
        name = run["scenario"]
        base = baselines.get(name)
        print(f"== {name}: {run.get('title', '')}")
        verdict = run.get("passed")
        if run.get("aborted"):
            print("   ABORTED: " + run["aborted"].splitlines()[0])
        for t in run.get("targets", []):
            print(f"   {'PASS' if t['pass'] else 'FAIL'}  {t['metric']} {t['op']} {fmt(t['threshold'])}"
                  f"  (measured {fmt(t['value'])})")
        if verdict is None and not run.get("targets"):
            print("   (no targets: informational)")
        print("   " + errors_line(run))
        print("   " + verification_line(run))
        if cpu_line(run):
            print("   " + cpu_line(run))
        metrics = run["metrics"]
        names = [m for m in KEY_METRICS if metrics.get(m) is not None]
        names += [t["metric"] for t in run.get("targets", []) if t["metric"] not in names]
        names += [m for m in metrics if m.startswith("wave") and m.endswith(("all_live_s", "p99_ms")) and m not in names]
        if base:
            print(f"   {'metric':34} {'this':>12} {'baseline':>12} {'ratio':>8}")
        else:
            print(f"   {'metric':34} {'this':>12}")
        for m in names:
            v = metrics.get(m)
            if base:
                b = base["metrics"].get(m)
                r = ratio(v, b)
                mark = ""
                if r is not None and direction(m) != 0 and abs(r - 1) > 0.2:
                    worse = (r > 1) == (direction(m) < 0)
                    mark = "  worse" if worse else "  better"
                print(f"   {m:34} {fmt(v):>12} {fmt(b):>12} {fmt(r) if r is not None else '-':>8}{mark}")
            else:
                print(f"   {m:34} {fmt(v):>12}")
        print()


# ---------------------------------------------------------------- SVG plots

def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = []
    for e in range(lo_e, hi_e + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks or [lo, hi]


def legend_rows(series: list[dict], width: int) -> list[list[tuple[dict, float]]]:
    rows, row, x = [], [], 0.0
    for s in series:
        w = 30 + 6.2 * len(s["label"])
        if row and x + w > width:
            rows.append(row)
            row, x = [], 0.0
        row.append((s, x))
        x += w
    if row:
        rows.append(row)
    return rows


def svg_chart(series: list[dict], title: str, x_label: str, y_label: str, *, log_y: bool = False,
              log_x: bool = False, percentile_x: bool = False, bars: bool = False, width: int = 620,
              plot_height: int = 190, y_min: float | None = None) -> str:
    """series: [{label, xs, ys, color, dashed, widths?}] -> an inline <svg>; the legend goes below.

    percentile_x plots x (a percentile) as log10(1/(1 - p/100)), HdrHistogram style;
    bars draws each point as a bar spanning widths[i] = (x_lo, x_hi)."""
    ml, mr, mt = 62, 12, 26
    pw, ph = width - ml - mr, plot_height
    rows = legend_rows(series, pw)
    height = mt + ph + 40 + 16 * len(rows) + 4

    def tx(x):
        if percentile_x:
            return math.log10(1 / max(1e-6, 1 - min(x, 99.9999) / 100))
        if log_x:
            return math.log10(x)
        return x

    pts = []
    for s in series:
        for i, (x, y) in enumerate(zip(s["xs"], s["ys"])):
            if x is None or y is None or (log_y and y <= 0) or (log_x and x <= 0):
                continue
            pts.append((tx(x), y))
            if bars:
                pts.append((tx(s["widths"][i][1]), y))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" class="chart">',
           f'<text x="{ml}" y="16" class="title">{html.escape(title)}</text>']
    if not pts:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">no data</text></svg>')
        return "".join(out)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if log_y:
        y0, y1 = 10 ** math.floor(math.log10(y0)), 10 ** math.ceil(math.log10(y1))
        if y1 == y0:
            y1 = y0 * 10
    else:
        y0 = 0 if y_min is None else min(y_min, y0)
        y1 = y1 * 1.08 if y1 > 0 else 1

    def px(x):
        return ml + (tx(x) - x0) / (x1 - x0) * pw

    def pxt(t):
        return ml + (t - x0) / (x1 - x0) * pw

    def py(y):
        if log_y:
            return mt + ph - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) * ph
        return mt + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="plot"/>')
    for t in (log_ticks(y0, y1) if log_y else nice_ticks(y0, y1)):
        y = py(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ml - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt(t)}</text>')
    if log_x:
        for t in log_ticks(10 ** x0, 10 ** x1):
            x = pxt(math.log10(t))
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
                       f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle" class="tick">{fmt(t)}</text>')
    elif percentile_x:
        for p in (0, 50, 90, 99, 99.9, 99.99, 99.999):
            t = tx(p)
            if x0 <= t <= x1 + 1e-9:
                x = pxt(t)
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
                           f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle" class="tick">{p:g}%</text>')
    else:
        for t in nice_ticks(x0, x1, 8):
            x = pxt(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
                       f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle" class="tick">{fmt(t)}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 32}" text-anchor="middle" class="label">{html.escape(x_label)}</text>')
    out.append(f'<text transform="translate(13,{mt + ph / 2}) rotate(-90)" text-anchor="middle" class="label">'
               f'{html.escape(y_label)}</text>')
    for s in series:
        color = s.get("color", "#333")
        dash = ' stroke-dasharray="5,3"' if s.get("dashed") else ""
        if bars:
            for (x, y), (lo_x, hi_x) in zip(zip(s["xs"], s["ys"]), s["widths"]):
                left, right = px(lo_x), px(hi_x)
                w = max(1.0, (right - left) * (0.45 if s.get("dashed") else 0.9))
                off = (right - left) * (0.5 if s.get("dashed") else 0.05)
                out.append(f'<rect x="{left + off:.1f}" y="{py(y):.1f}" width="{w:.1f}" '
                           f'height="{mt + ph - py(y):.1f}" fill="{color}" opacity="{0.5 if s.get("dashed") else 0.85}"/>')
        else:
            # Break the line where data is missing, so gaps show as gaps.
            segments, current = [], []
            for x, y in zip(s["xs"], s["ys"]):
                if x is None or y is None or (log_y and y <= 0):
                    if current:
                        segments.append(current)
                    current = []
                else:
                    current.append(f"{px(x):.1f},{py(y):.1f}")
            if current:
                segments.append(current)
            for seg in segments:
                if len(seg) == 1:
                    cx, cy = seg[0].split(",")
                    out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
                else:
                    out.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" '
                               f'stroke-width="1.6"{dash}/>')
    for r, row in enumerate(rows):
        y = mt + ph + 48 + 16 * r
        for s, offset in row:
            x = ml + offset
            dash = ' stroke-dasharray="5,3"' if s.get("dashed") else ""
            out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{s.get("color", "#333")}" '
                       f'stroke-width="3"{dash}/><text x="{x + 22:.1f}" y="{y}" class="legend">{html.escape(s["label"])}</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- HTML

def ts(run: dict, key: str) -> list:
    return run.get("timeseries", {}).get(key, [])


def ms_list(values: list) -> list:
    return [None if v is None else v / 1000 for v in values]


def charts(run: dict, base: dict | None) -> list[str]:
    out = []
    runs = [(run, False, "")] + ([(base, True, " (baseline)")] if base else [])
    kinds = [(k, label) for k, label in KINDS if run["calls"][k]["count"] > 0 or (base and base["calls"][k]["count"] > 0)]

    # Latency over time: p99 per second per kind (p50 dotted-free for readability: in the table).
    series = []
    for r, dashed, suffix in runs:
        for k, label in kinds:
            series.append({"label": f"{label} p99{suffix}", "xs": ts(r, "t_s"), "ys": ms_list(ts(r, f"p99_us_{k}")),
                           "color": COLORS[k], "dashed": dashed})
    out.append(svg_chart(series, "Latency over time (p99 of each second)", "seconds", "ms", log_y=True))

    series = []
    for r, dashed, suffix in runs:
        for k, label in kinds:
            series.append({"label": f"{label} p50{suffix}", "xs": ts(r, "t_s"), "ys": ms_list(ts(r, f"p50_us_{k}")),
                           "color": COLORS[k], "dashed": dashed})
    out.append(svg_chart(series, "Latency over time (p50 of each second)", "seconds", "ms", log_y=True))

    # Percentile distribution (HdrHistogram style).
    series = []
    for r, dashed, suffix in runs:
        for k, label in kinds:
            lat = r["latency"].get(k) or {}
            pct = lat.get("percentiles") or []
            # 100 % sits at infinity on this axis: plot the maximum at 1 - 1/count instead.
            top = 100 * (1 - 1 / max(2, lat.get("count") or 2))
            xs = [min(p[0], top) if p[0] >= 100 else p[0] for p in pct]
            series.append({"label": f"{label}{suffix}", "xs": xs, "ys": [p[1] / 1000 for p in pct],
                           "color": COLORS[k], "dashed": dashed})
    out.append(svg_chart(series, "Latency by percentile", "percentile", "ms", log_y=True, percentile_x=True))

    # Histogram (log buckets), one chart per kind.
    for k, label in kinds:
        series = []
        for r, dashed, suffix in runs:
            b = (r["latency"].get(k) or {}).get("buckets") or []
            series.append({"label": f"{label}{suffix}", "xs": [x[0] / 1000 for x in b], "ys": [x[2] for x in b],
                           "widths": [(x[0] / 1000, x[1] / 1000) for x in b], "color": COLORS[k], "dashed": dashed})
        out.append(svg_chart(series, f"Histogram: {label}", "ms (log scale)", "calls", bars=True, log_x=True))

    # Resources.
    series = []
    for r, dashed, suffix in runs:
        series.append({"label": f"driver RSS{suffix}", "xs": ts(r, "t_s"), "ys": ts(r, "driver_rss_mib"),
                       "color": COLORS["driver"], "dashed": dashed})
        series.append({"label": f"provider RSS{suffix}", "xs": ts(r, "t_s"), "ys": ts(r, "provider_rss_mib"),
                       "color": COLORS["provider"], "dashed": dashed})
    out.append(svg_chart(series, "Resident memory (VmRSS)", "seconds", "MiB"))
    series = []
    for r, dashed, suffix in runs:
        for who in ("driver", "provider", "harness"):
            series.append({"label": f"{who}{suffix}", "xs": ts(r, "t_s"), "ys": ts(r, f"{who}_cpu_pct"),
                           "color": COLORS[who], "dashed": dashed})
    out.append(svg_chart(series, "CPU (% of one core, per second)", "seconds", "%"))

    series = []
    for r, dashed, suffix in runs:
        series.append({"label": f"mounted volumes{suffix}", "xs": ts(r, "t_s"), "ys": ts(r, "live_volumes"),
                       "color": COLORS["live"], "dashed": dashed})
        if any(v is not None for v in ts(r, "stale_volumes")):
            series.append({"label": f"volumes with the old secret{suffix}", "xs": ts(r, "t_s"),
                           "ys": ts(r, "stale_volumes"), "color": COLORS["stale"], "dashed": dashed})
    out.append(svg_chart(series, "Volumes", "seconds", "volumes"))

    series = []
    for r, dashed, suffix in runs:
        total = [sum(x) for x in zip(*[ts(r, f"calls_{k}") for k, _ in KINDS])] if ts(r, "t_s") else []
        series.append({"label": f"driver calls/s{suffix}", "xs": ts(r, "t_s"), "ys": total, "color": COLORS["calls"],
                       "dashed": dashed})
        series.append({"label": f"provider mounts/s{suffix}", "xs": ts(r, "t_s"), "ys": ts(r, "provider_mounts_per_s"),
                       "color": COLORS["provider"], "dashed": dashed})
    out.append(svg_chart(series, "Calls per second", "seconds", "calls/s"))
    return out


def rpc_table(run: dict) -> str:
    rows = []
    measured = run["window"]["measured_s"] or 1
    for k, label in KINDS:
        c = run["calls"][k]
        if c["count"] == 0:
            continue
        lat = run["latency"][k]
        failed = (run.get("latency_failed") or {}).get(k) or {}
        errors = ", ".join(f"{code} {n}" for code, n in c["errors"].items()) or "0"
        rate = "" if k == "teardown" else fmt(c["count"] / measured)
        cells = [label, str(c["count"]), html.escape(errors), rate] + [
            fmt(lat[f] / 1000 if lat.get(f) is not None else None) for f in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
        cells.append(fmt(failed["p50_us"] / 1000 if failed.get("p50_us") is not None else None))
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("rpc", "calls", "errors", "calls/s", "p50 ms", "p90 ms", "p99 ms",
                                                 "p99.9 ms", "max ms", "failed p50 ms"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def metrics_table(run: dict, base: dict | None) -> str:
    head = "<tr><th>metric</th><th>this run</th>" + ("<th>baseline</th><th>ratio</th>" if base else "") + "</tr>"
    rows = []
    for m, v in run["metrics"].items():
        b = base["metrics"].get(m) if base else None
        if v is None and b is None:
            continue
        cells = f"<td>{html.escape(m)}</td><td>{fmt(v)}</td>"
        if base:
            r = ratio(v, b)
            cls = ""
            if r is not None and direction(m) != 0 and abs(r - 1) > 0.2:
                cls = ' class="worse"' if (r > 1) == (direction(m) < 0) else ' class="better"'
            cells += f"<td>{fmt(b)}</td><td{cls}>{fmt(r) if r is not None else '-'}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def section(run: dict, base: dict | None) -> str:
    name = html.escape(run["scenario"])
    parts = [f'<section id="{name}"><h2>{name}: {html.escape(run.get("title", ""))}</h2>']
    cfg = run["config"]
    parts.append(f'<p class="muted">started {html.escape(run["started_at"])}, driver {html.escape(run["driver_mode"])},'
                 f' measured {fmt(run["window"]["measured_s"])} s on {run["host"]["cpus"]} CPUs'
                 f' (load {fmt(run["host"].get("load_avg_1m"))}), kubelet root on'
                 f' {html.escape(run["host"].get("kubelet_root_fs", "an unrecorded file system"))};'
                 f' workload {html.escape(cfg["workload"])}, provider latency {html.escape(cfg["provider_latency"])}'
                 + (f'; baseline from {html.escape(base["started_at"])}' if base else "") + "</p>")
    if run.get("aborted"):
        parts.append(f'<p class="fail">ABORTED: {html.escape(run["aborted"])}</p>')
    if run.get("targets"):
        rows = []
        for t in run["targets"]:
            b = base["metrics"].get(t["metric"]) if base else None
            rows.append(f'<tr><td class="{"pass" if t["pass"] else "fail"}">{"PASS" if t["pass"] else "FAIL"}</td>'
                        f'<td>{html.escape(t["metric"])} {html.escape(t["op"])} {fmt(t["threshold"])}</td>'
                        f'<td>{fmt(t["value"])}</td>' + (f"<td>{fmt(b)}</td>" if base else "") + "</tr>")
        parts.append("<table><tr><th></th><th>target</th><th>measured</th>" + ("<th>baseline</th>" if base else "")
                     + f"</tr>{''.join(rows)}</table>")
    else:
        parts.append('<p class="muted">No targets: informational.</p>')
    parts.append(rpc_table(run))
    err_cls = "fail" if (run.get("errors") or {}).get("total") else "muted"
    parts.append(f'<p class="{err_cls}">{html.escape(errors_line(run))}. {html.escape(verification_line(run))}.'
                 ' Latency columns hold successful, verified calls only; failed calls are timed apart.</p>')
    if cpu_line(run):
        parts.append(f"<p>{html.escape(cpu_line(run))}.</p>")
    prop = run.get("propagation")
    if prop:
        if prop.get("complete"):
            parts.append(f'<p>Secret changed at {fmt(prop["changed_at_s"])} s: every live volume showed it after '
                         f'<b>{fmt(prop["all_seen_after_s"])} s</b> ({prop["volumes_at_change"]} volumes at the change;'
                         f' per volume p50 {fmt(prop["per_volume_s"]["p50"])} s, max {fmt(prop["per_volume_s"]["max"])} s).</p>')
        else:
            parts.append(f'<p class="fail">Secret changed at {fmt(prop.get("changed_at_s"))} s: {prop["stale_at_end"]} '
                         f'volumes still showed the old value at the end.</p>')
    for g in run.get("groups", []):
        if cfg["workload"] != "kubelet":
            break
        fp = g["first_publish"]
        parts.append(f'<p>{html.escape(g["name"])}: {g["count"]} pods at {fmt(g["at_s"])} s ({html.escape(g["arrival"])}):'
                     f' all mounted after {fmt(g["all_live_s"])} s; first publish p50 '
                     f'{fmt(fp["p50_us"] / 1000 if fp["p50_us"] else None)} ms, p99 '
                     f'{fmt(fp["p99_us"] / 1000 if fp["p99_us"] else None)} ms</p>')
    parts.append('<div class="charts">' + "".join(charts(run, base)) + "</div>")
    parts.append("<details><summary>All metrics</summary>" + metrics_table(run, base) + "</details>")
    if run.get("error_samples"):
        parts.append("<details><summary>Error samples</summary><pre>" +
                     html.escape("\n".join(run["error_samples"])) + "</pre></details>")
    parts.append("<details><summary>Command</summary><pre>" + html.escape(" ".join(run["command"])) + "</pre></details>")
    parts.append("</section>")
    return "".join(parts)


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1320px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-top: 1px solid #ddd; padding-top: 16px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
.worse { color: #cf222e; } .better { color: #1a7f37; } .muted { color: #777; }
.charts { display: flex; flex-wrap: wrap; gap: 8px; }
svg.chart { background: #fff; border: 1px solid #eee; }
svg .title { font-size: 13px; font-weight: 600; } svg .tick, svg .legend { font-size: 10px; fill: #555; }
svg .label { font-size: 11px; fill: #555; } svg .plot { fill: #fcfcfc; stroke: #ccc; }
svg .grid { stroke: #eee; } svg .muted { fill: #999; font-size: 12px; }
"""


def render(runs: list[dict], baselines: dict[str, dict]) -> str:
    rows = []
    for run in runs:
        base = baselines.get(run["scenario"])
        verdict = run.get("passed")
        if run.get("aborted"):
            status = '<span class="fail">aborted</span>'
        elif verdict is None:
            status = '<span class="muted">informational</span>'
        else:
            status = '<span class="pass">PASS</span>' if verdict else '<span class="fail">FAIL</span>'
        targets = "; ".join(f'{"✓" if t["pass"] else "✗"} {t["metric"]} {t["op"]} {fmt(t["threshold"])} '
                            f'(measured {fmt(t["value"])}' + (f', baseline {fmt(base["metrics"].get(t["metric"]))}' if base else "")
                            + ")" for t in run.get("targets", []))
        rows.append(f'<tr><td><a href="#{html.escape(run["scenario"])}">{html.escape(run["scenario"])}</a></td>'
                    f'<td>{html.escape(run.get("title", ""))}</td><td>{status}</td>'
                    f'<td style="text-align:left">{html.escape(targets)}</td></tr>')
    overview = ("<table><tr><th>scenario</th><th>what</th><th>verdict</th><th>targets</th></tr>" + "".join(rows)
                + "</table>")
    note = ('<p class="muted">Dashed lines and pale bars: the baseline run. Ratios are this run / baseline;'
            ' red marks a change over 20 % in the bad direction. This machine is noisy.</p>' if baselines else "")
    body = "".join(section(r, baselines.get(r["scenario"])) for r in runs)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>csi-load report</title><style>{CSS}</style>"
            f"</head><body><h1>Secrets Store CSI driver: load report</h1>{note}{overview}{body}</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="csi-load --out files, or directories of them")
    ap.add_argument("--baseline", nargs="*", default=[], help="results to compare against (matched by scenario)")
    ap.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    ap.add_argument("--quiet", action="store_true", help="do not print the comparison table")
    opts = ap.parse_args(argv)
    runs = load_runs(opts.results)
    if not runs:
        sys.exit("report.py: no csi-load results found")
    baselines = {b["scenario"]: b for b in load_runs(opts.baseline)}
    if not opts.quiet:
        print_comparison(runs, baselines)
    Path(opts.output).write_text(render(runs, baselines))
    print(f"report: {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
