#!/usr/bin/python3
"""report.py: renders bench.py's results.json as Markdown (the figures part of docs/benchmarks.md).

    /usr/bin/python3 bench/report.py RESULTS.json
"""
import json
import statistics
import sys


def _s(x, d=2):
    return "–" if x is None else f"{x:.{d}f} s"


def _mib(kb_or_mib):
    return f"{kb_or_mib:.0f} MiB"


def _ok(cond):
    return "n/a" if cond is None else ("**pass**" if cond else "**MISS**")


# The streams the apply worker applies (src/pg/apply_worker.cpp, applied_apart) while the sync
# worker applies the others.
SALES_SIDE = ("orders", "payments", "refunds", "transactions")


def windows(run, force=False):
    """Each stream's apply window and the run's phases. Locations are applied first, then every
    other stream is fetched and staged together, then applied: the catalog side in turn by the sync
    worker, the sales side meanwhile by the apply worker when it ran. applied_at is the apply
    transaction's start; apply_seconds stops before the commit (deferred foreign keys are checked
    at commit), so a sync worker stream's window runs from its applied_at to its next stream's (the
    last one's to the run's end); an apply worker stream's window is its statement's time. With
    force, windows already in run are computed again."""
    st = run["streams"]
    apart = bool((run.get("apply_worker") or {}).get("pid"))
    for k in SALES_SIDE:
        if apart and k in st:
            st[k]["apply_worker"] = True
    order = sorted((v["apply_start"], k) for k, v in st.items()
                   if v.get("apply_start") is not None and not st[k].get("apply_worker"))
    for i, (start, k) in enumerate(order):
        end = order[i + 1][0] if i + 1 < len(order) else run["run_seconds"]
        # Locations are applied before the other streams are fetched: their window is the apply.
        w = st[k]["apply_seconds"] if k == "locations" else end - start
        st[k]["apply_window_seconds"] = w if force else st[k].get("apply_window_seconds", w)
    for k, v in st.items():
        if v.get("apply_worker"):
            v["apply_window_seconds"] = v["apply_seconds"] if force else v.get("apply_window_seconds", v["apply_seconds"])
    ph = run.setdefault("phases", {})
    rest = [v for k, v in st.items() if k != "locations" and v.get("apply_start") is not None]
    if rest and (force or "apply_incl_commit" not in ph):
        ph.clear()
        first = min(v["apply_start"] for v in rest)
        loc = st.get("locations", {})
        loc_end = (loc.get("apply_start") or 0) + (loc.get("apply_window_seconds") or 0)
        ph.update({"start_and_locations": loc_end, "fetch_and_stage": first - loc_end,
                   "apply_incl_commit": run["run_seconds"] - first,
                   "apply_statements": sum(v["apply_seconds"] or 0 for v in rest)})


def render(r):
    for run in [r["foundation"], (r.get("scale10") or {}).get("foundation"), r.get("profile")] + \
            list((r.get("latency") or {}).values()) + r.get("incr_nothing", []) + r.get("incr_day", []):
        if run:
            windows(run, force=True)
    out = []
    m = r["machine"]
    f = r["foundation"]
    fd = r["floor_download"]
    fc = r["floor_copy"]
    w = f["worker"]
    out.append(f"Run of {r['date']} (git {r['git']}), command `{r['command']}`"
               f"{' (--quick: a smoke run, not the benchmark)' if r.get('quick') else ''}.")
    out.append("")
    out.append(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, {m['os']}, kernel {m['kernel']},"
               f" {m['postgresql']}, libcurl {m['libcurl']}, Python {m['python']}. Cluster: fresh initdb,"
               f" fsync={r['pg_settings'].get('fsync')}, shared_buffers={int(r['pg_settings'].get('shared_buffers', 0)) * 8 // 1024} MiB,"
               f" squaresync.max_concurrency={r['pg_settings'].get('squaresync.max_concurrency')}."
               f" Dataset: fake Square `seed`{'' if r['scale'] == 1.0 else ' at scale ' + str(r['scale'])}"
               f" ({sum(r['row_counts'].values()):,} rows in {len(r['row_counts'])} tables), on loopback, plain HTTP with gzip"
               f"{'; the fake runs with TCP_NODELAY (bench/fake_nodelay.py)' if r.get('fake_nodelay') else ''}.")
    out.append("")

    # ---- the figures against the targets ----------------------------------------------------------
    floor = fd["raw"]["seconds"] + fc["seconds"]
    nothing = [x["wall_seconds"] for x in r["incr_nothing"]]
    day = [x["wall_seconds"] for x in r["incr_day"]]
    n_med, d_max = statistics.median(nothing), max(day)
    F = f["wall_seconds"]
    ow = r.get("oldway")
    rows = []
    walls = f.get("all_wall_seconds") or [F]
    rows.append(("1", "Foundation, wall time" + (f" (median of {len(walls)}: " + ", ".join(_s(x) for x in walls) + ")"
                                                  if len(walls) > 1 else ""), _s(F), "–", ""))
    rows.append(("1", "Foundation, worker peak memory (VmHWM" + (f", highest of {len(walls)}" if len(walls) > 1 else "") + ")", _mib(w["peak_rss_mib"]), "< 256 MiB",
                 _ok(w["peak_rss_mib"] < 256)))
    rows.append(("1", "  of which private (peak RssAnon)", _mib(w["peak_rss_anon_mib"]), "", ""))
    aw = f.get("apply_worker") or {}
    if aw.get("pid"):
        rows.append(("1", "Foundation, apply worker peak memory (VmHWM; it applies the sales side)", _mib(aw["peak_rss_mib"]),
                     "< 256 MiB", _ok(aw["peak_rss_mib"] < 256)))
        rows.append(("1", "  of which private (peak RssAnon)", _mib(aw["peak_rss_anon_mib"]), "", ""))
    rows.append(("2a", "Floor: download every page to nowhere (same HttpClient settings)", _s(fd["raw"]["seconds"]), "", ""))
    rows.append(("2a", "  the same + JSON parse (simdjson, on the helper thread)", _s(fd["parse"]["seconds"]), "", ""))
    rows.append(("2a", "  the same + parse + map to rows + COPY text (what the worker does before staging)", _s(fd["map"]["seconds"]), "", ""))
    copies = fc.get("all_seconds") or [fc["seconds"]]
    rows.append(("2b", f"Floor: COPY the final rows ({fc['rows']:,}) into empty copies with the same indexes"
                 + (f" (median of {len(copies)}: " + ", ".join(_s(x) for x in copies) + ")" if len(copies) > 1 else ""),
                 _s(fc["seconds"]), "", ""))
    rows.append(("2", "foundation / (download + copy)", f"{r['floor_ratio']:.2f}x", "≤ 2x", _ok(r["floor_ratio"] <= 2)))
    rows.append(("3", "Incremental, nothing changed: wall (median of 3)", _s(n_med, 3) + f" ({n_med / F * 100:.1f}% of foundation)",
                 "< 2% of foundation", _ok(n_med < 0.02 * F)))
    x = r["incr_nothing"][0]
    rows.append(("3", "  API requests / rows written", f"{x['api_requests']} / {x['rows_written']}", "", ""))
    rows.append(("3", "Incremental after a day's changes: wall (worse of 2)", _s(d_max, 3) + f" ({d_max / F * 100:.1f}% of foundation)",
                 "< 5% of foundation", _ok(d_max < 0.05 * F)))
    for i, y in enumerate(r["incr_day"]):
        rows.append(("3", f"  day {i + 1}: API requests / rows written (ins+upd+del) / audit rows",
                     f"{y['api_requests']} / {y['rows_written']} ({y['inserted']}+{y['updated']}+{y['deleted']}) / {y['audit_rows']}",
                     "", ""))
    if ow:
        rows.append(("6", "The old way: clear and reload everything (bench/oldway.py)", _s(ow["seconds"]), "", ""))
        rows.append(("3/6", "old way / incremental, nothing changed", f"{ow['seconds'] / n_med:.0f}x", "≥ 50x",
                     _ok(ow["seconds"] / n_med >= 50)))
        rows.append(("3/6", "old way / incremental after a day", f"{ow['seconds'] / d_max:.0f}x", "≥ 50x",
                     _ok(ow["seconds"] / d_max >= 50)))
    lat = r.get("latency")
    if lat:
        lf = lat["foundation"]
        seq = lf["api_requests"] * 0.1
        rows.append(("4", f"Latency 100 ms: foundation ({lf['api_requests']} requests, sequential latency sum {seq:.1f} s)",
                     _s(lf["wall_seconds"]) + f" ({lf['wall_seconds'] / seq:.2f} of the sum)", "< 1/3 of the sum",
                     _ok(lf["wall_seconds"] < seq / 3)))
        for k, label in (("incr_nothing", "nothing changed"), ("incr_day", "after a day")):
            y = lat[k]
            rows.append(("4", f"Latency 100 ms: incremental, {label} ({y['api_requests']} requests, sum {y['api_requests'] * 0.1:.1f} s)",
                         _s(y["wall_seconds"]), "< 2 s", _ok(y["wall_seconds"] < 2)))
    s10 = r.get("scale10")
    if s10:
        g = s10["foundation"]
        ratio_t = g["wall_seconds"] / F
        ratio_m = g["worker"]["peak_rss_mib"] / w["peak_rss_mib"]
        rows.append(("5", f"Scale 10: foundation wall ({sum(s10['row_counts'].values()):,} rows)",
                     _s(g["wall_seconds"]) + f" ({ratio_t:.1f}x the seed's)", "< 11x the seed's", _ok(ratio_t < 11)))
        rows.append(("5", "Scale 10: worker peak memory (VmHWM)",
                     _mib(g["worker"]["peak_rss_mib"]) + f" ({ratio_m:.2f}x the seed's)",
                     "< 1.5x the seed's (and < 384 MiB)", _ok(ratio_m < 1.5 and g["worker"]["peak_rss_mib"] < 384)))
        rows.append(("5", "  of which private (peak RssAnon)", _mib(g["worker"]["peak_rss_anon_mib"]), "", ""))
        gaw = g.get("apply_worker") or {}
        if gaw.get("pid") and aw.get("pid"):
            ratio_a = gaw["peak_rss_mib"] / aw["peak_rss_mib"]
            rows.append(("5", "Scale 10: apply worker peak memory (VmHWM)",
                         _mib(gaw["peak_rss_mib"]) + f" ({ratio_a:.2f}x the seed's)",
                         "< 1.5x the seed's (and < 384 MiB)", _ok(ratio_a < 1.5 and gaw["peak_rss_mib"] < 384)))
            rows.append(("5", "  of which private (peak RssAnon)", _mib(gaw["peak_rss_anon_mib"]), "", ""))
        s10floor = s10["floor_download"]["raw"]["seconds"] + s10["floor_copy"]["seconds"]
        rows.append(("5", f"Scale 10: floor (download {_s(s10['floor_download']['raw']['seconds'])} + copy {_s(s10['floor_copy']['seconds'])})",
                     f"foundation / floor = {g['wall_seconds'] / s10floor:.2f}x", "", ""))
        rows.append(("5", "Scale 10: incremental, nothing changed", _s(s10["incr_nothing"]["wall_seconds"], 3) +
                     f" ({s10['incr_nothing']['api_requests']} requests)", "", ""))
    out.append("| # | Figure | Measured | Target | |")
    out.append("|---|---|---|---|---|")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    # ---- breakdowns -------------------------------------------------------------------------------
    out.append("#### Foundation: where the time goes")
    out.append("")
    ph = f.get("phases", {})
    apply_total = ph.get("apply_incl_commit", ph.get("apply", 0))
    out.append(f"Run {f['run_seconds']:.2f} s inside the worker ({F:.2f} s at the client):"
               f" start + locations {ph.get('start_and_locations', 0):.2f} s,"
               f" fetch + parse + map + stage of all other streams together {ph.get('fetch_and_stage', 0):.2f} s,"
               f" then apply {apply_total:.2f} s (the catalog side stream after stream in the sync worker, the"
               f" sales side meanwhile in the apply worker)"
               f" (of which the apply statements {ph.get('apply_statements', apply_total):.2f} s; the rest is the"
               f" commits, where the deferred foreign keys are checked)."
               f" Sync worker CPU {w['cpu_seconds']:.1f} s, apply worker CPU"
               f" {(f.get('apply_worker') or {}).get('cpu_seconds', 0):.1f} s; the fake server's CPU {f.get('fake_cpu_seconds', 0):.1f} s"
               f" (both share {m['nproc']} cores). {f['api_requests']} requests, {f['bytes_received'] / 1e6:.1f} MB received (decompressed).")
    out.append("")
    prof = r.get("profile") or {}
    # Staging goes through the COPY machinery (src/pg/spi.cpp), which pg_stat_statements does not see.
    out.append("| Stream | Pages | Rows staged | Apply statement | Apply incl. commit |")
    out.append("|---|---|---|---|---|")
    for name, s in sorted(f["streams"].items(), key=lambda kv: -(kv[1].get("apply_window_seconds") or kv[1]["apply_seconds"] or 0)):
        where = " (apply worker: its statement; the commit is not timed)" if s.get("apply_worker") else ""
        out.append(f"| {name}{where} | {s['pages']} | {s['rows_staged']:,} | {_s(s['apply_seconds'])} | {_s(s.get('apply_window_seconds'))} |")
    out.append("")
    if prof.get("pgss_top"):
        out.append("Top statements by total time (profiled foundation, pg_stat_statements, track = all; nested"
                   " statements are counted inside their callers too):")
        out.append("")
        out.append("| Calls | Total | Rows | Statement |")
        out.append("|---|---|---|---|")
        for q in prof["pgss_top"][:15]:
            out.append(f"| {q['calls']} | {q['seconds']:.2f} s | {q['rows']:,} | `{q['query'][:120].replace('|', '/')}` |")
        out.append("")
    if prof.get("perf"):
        p = prof["perf"]
        out.append("perf (system-wide, cpu-clock, profiled foundation), samples by process:")
        out.append("")
        out.append("```")
        out.extend(p["by_process"])
        out.append("```")
        out.append("")
        out.append("The sync worker's samples by shared object, and its top symbols:")
        out.append("")
        out.append("```")
        out.extend(p["worker_dso"])
        out.append("")
        out.extend(p["worker_symbols"][:25])
        out.append("```")
        out.append("")
    out.append("Floor (a) passes (floor_download, concurrency "
               f"{fd['concurrency']}): download only {_s(fd['raw']['seconds'])}, + JSON parse {_s(fd['parse']['seconds'])},"
               f" + parse + map {_s(fd['map']['seconds'])}; {fd['raw']['requests']} requests,"
               f" {fd['raw']['bytes'] / 1e6:.1f} MB; one transfer at a time (download only):"
               f" {_s(r['floor_download_seq']['raw']['seconds'])}.")
    out.append("")
    out.append(f"Floor (b): COPY FROM of {fc['rows']:,} rows into {len(fc['tables'])} tables, one transaction:"
               f" {fc['seconds']:.2f} s (the biggest: "
               + ", ".join(f"{t} {v:.2f} s" for t, v in sorted(fc['tables'].items(), key=lambda kv: -kv[1])[:4])
               + f"). The copies have the same indexes (LIKE ... INCLUDING ALL), not the foreign keys.")
    out.append("")
    if ow:
        out.append(f"The old way (bench/oldway.py): {ow['seconds']:.2f} s = HTTP {ow['http_seconds']:.2f} s"
                   f" ({ow['requests']} sequential requests, {ow['bytes'] / 1e6:.1f} MB uncompressed)"
                   f" + JSON parse and map in Python {ow['parse_map_seconds']:.2f} s + COPY {ow['copy_seconds']:.2f} s"
                   f" + commit and other {ow['commit_and_other_seconds']:.2f} s; {ow['rows']:,} rows.")
        out.append("")
    out.append("#### Incrementals: where the time goes")
    out.append("")
    out.append("| Run | Wall | Start + locations | Fetch + stage | Apply incl. commits | Largest applies (rows staged, seconds) |")
    out.append("|---|---|---|---|---|---|")
    for label, runs in (("nothing changed", r["incr_nothing"]), ("after a day", r["incr_day"])):
        for i, y in enumerate(runs):
            ph = y.get("phases", {})
            top = sorted(y["streams"].items(), key=lambda kv: -(kv[1].get("apply_window_seconds") or 0))[:3]
            out.append(f"| {label} {i + 1} | {y['wall_seconds']:.3f} s | {ph.get('start_and_locations', 0):.3f} s"
                       f" | {ph.get('fetch_and_stage', 0):.3f} s | {ph.get('apply_incl_commit', 0):.3f} s | "
                       + ", ".join(f"{n} ({v['rows_staged']:,}, {v.get('apply_window_seconds') or 0:.3f} s)" for n, v in top)
                       + " |")
    out.append("")
    out.append("In the sync worker (the catalog side), an apply's window runs to the start of its next one: the last"
               " one's (vendors) includes the item library export rebuild (`_after_run`) and the wait for the apply"
               " worker. The apply worker's streams (the sales side: orders, payments, refunds, transactions) show"
               " their statement's time.")
    out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(render(json.load(fh)))
