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


# The streams the apply worker applies (src/pg/apply_worker.cpp, applied_apart) as soon as they are
# fetched, before it rebuilds the item library export; the sync worker applies the others, each as
# soon as it is fetched (the orders last).
CATALOG_SIDE = ("catalog", "inventory", "vendors")


def windows(run, force=False):
    """The run's timeline. Locations are applied first; then every other stream is fetched, and
    each applied as soon as it is: the catalog side by the apply worker (when one ran), which then
    rebuilds the export (derived_at), the others by the sync worker between the pages still coming
    in (the orders last in a foundation, first of the sales side in an incremental run). applied_at
    is an apply transaction's start, apply_seconds its statement's time (the commit is not timed).
    Phases: start and locations; the fetch, until the last stream the sync worker applies starts its
    apply; then that apply, its commit and the run's end. With force, what is in run is computed
    again."""
    st = run["streams"]
    apart = bool((run.get("apply_worker") or {}).get("pid")) or run.get("parallel_apply", False)
    for k, v in st.items():
        v["apply_worker"] = apart and k in CATALOG_SIDE
    ph = run.setdefault("phases", {})
    if ph and not force:
        return
    ph.clear()
    loc = st.get("locations", {})
    loc_end = (loc.get("apply_start") or 0) + (loc.get("apply_seconds") or 0)
    mine = [v for k, v in st.items() if k != "locations" and not v["apply_worker"] and v.get("apply_start") is not None]
    theirs = [v for v in st.values() if v["apply_worker"] and v.get("apply_start") is not None]
    rest = [v for k, v in st.items() if k != "locations" and v.get("apply_start") is not None]
    if not mine:
        return
    last = max(v["apply_start"] for v in mine)
    ph.update({"start_and_locations": loc_end, "fetch_and_stage": last - loc_end,
               "apply_incl_commit": run["run_seconds"] - last,
               "apply_statements": sum(v["apply_seconds"] or 0 for v in rest)})
    if theirs:
        ph["apply_worker_start"] = min(v["apply_start"] for v in theirs)
        ph["apply_worker_streams_end"] = max(v["apply_start"] + (v["apply_seconds"] or 0) for v in theirs)
    if run.get("derived_seconds") is not None:
        ph["export_done"] = run["derived_seconds"]


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
    n_med, d_med, d_max = statistics.median(nothing), statistics.median(day), max(day)
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
        rows.append(("1", "Foundation, apply worker peak memory (VmHWM; it applies the catalog side)", _mib(aw["peak_rss_mib"]),
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
    rows.append(("3", f"Incremental after a day's changes: wall (median of {len(day)}: " + ", ".join(_s(x, 3) for x in day)
                 + f"; worst {d_max / F * 100:.1f}% of foundation)", _s(d_med, 3) + f" ({d_med / F * 100:.1f}% of foundation)",
                 "< 5% of foundation", _ok(d_med < 0.05 * F)))
    for i, y in enumerate(r["incr_day"]):
        rows.append(("3", f"  day {i + 1}: API requests / rows written (ins+upd+del) / audit rows",
                     f"{y['api_requests']} / {y['rows_written']} ({y['inserted']}+{y['updated']}+{y['deleted']}) / {y['audit_rows']}",
                     "", ""))
    if ow:
        ows = ow.get("all_seconds") or [ow["seconds"]]
        rows.append(("6", "The old way: clear and reload everything (bench/oldway.py)"
                     + (f" (median of {len(ows)}: " + ", ".join(_s(x) for x in ows) + ")" if len(ows) > 1 else ""),
                     _s(ow["seconds"]), "", ""))
        rows.append(("3/6", "old way / incremental, nothing changed", f"{ow['seconds'] / n_med:.0f}x", "≥ 50x",
                     _ok(ow["seconds"] / n_med >= 50)))
        rows.append(("3/6", f"old way / incremental after a day (medians; against the worst day {ow['seconds'] / d_max:.0f}x)",
                     f"{ow['seconds'] / d_med:.0f}x", "≥ 50x", _ok(ow["seconds"] / d_med >= 50)))
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
        ratio_m = g["worker"]["peak_rss_mib"] / w["peak_rss_mib"]
        if "seed_before_seconds" in s10:
            # Against the seed's foundation measured just before and just after it, on its cluster.
            ref = (s10["seed_before_seconds"] + s10["seed_after_seconds"]) / 2
            ratio_t = g["wall_seconds"] / ref
            rows.append(("5", f"Scale 10: foundation wall ({sum(s10['row_counts'].values()):,} rows), against the seed's"
                         f" foundation just before and after it on the same cluster ({_s(s10['seed_before_seconds'])},"
                         f" {_s(s10['seed_after_seconds'])}; against the seed figure above: {g['wall_seconds'] / F:.1f}x)",
                         _s(g["wall_seconds"]) + f" ({ratio_t:.1f}x the seed's)", "< 11x the seed's", _ok(ratio_t < 11)))
        else:
            ratio_t = g["wall_seconds"] / F
            rows.append(("5", f"Scale 10: foundation wall ({sum(s10['row_counts'].values()):,} rows)",
                         _s(g["wall_seconds"]) + f" ({ratio_t:.1f}x the seed's)", "< 11x the seed's", _ok(ratio_t < 11)))
        rows.append(("5", "Scale 10: worker peak memory (VmHWM)",
                     _mib(g["worker"]["peak_rss_mib"]) + f" ({ratio_m:.2f}x the seed's)",
                     "< 1.5x the seed's (and < 384 MiB)", _ok(ratio_m < 1.5 and g["worker"]["peak_rss_mib"] < 384)))
        rows.append(("5", "  of which private (peak RssAnon)", _mib(g["worker"]["peak_rss_anon_mib"]), "", ""))
        gaw = g.get("apply_worker") or {}
        if gaw.get("pid") and aw.get("pid"):
            ratio_a = gaw["peak_rss_mib"] / aw["peak_rss_mib"]
            # The apply worker applies only the catalog side: its seed-size peak is small (the shared
            # buffers a small catalog touches), so it is held to the worker's bound, 1.5 x 256 MiB,
            # and its ratio to its own seed-size peak is shown beside.
            rows.append(("5", "Scale 10: apply worker peak memory (VmHWM; it applies the catalog side)",
                         _mib(gaw["peak_rss_mib"]) + f" ({ratio_a:.2f}x its own seed-size peak)",
                         "< 384 MiB (1.5 x 256 MiB)", _ok(gaw["peak_rss_mib"] < 384)))
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
    aw_txt = ""
    if ph.get("apply_worker_start") is not None:
        aw_txt = (f" Meanwhile the apply worker applied the catalog side from {ph['apply_worker_start']:.2f} s to"
                  f" {ph['apply_worker_streams_end']:.2f} s" +
                  (f" and had the item library export rebuilt at {ph['export_done']:.2f} s" if ph.get("export_done") else "") +
                  " (times from the run's start).")
    out.append(f"Run {f['run_seconds']:.2f} s inside the worker ({F:.2f} s at the client):"
               f" start + locations {ph.get('start_and_locations', 0):.2f} s,"
               f" then the fetch of every other stream, each applied as soon as it is fetched, until the last"
               f" (the orders) {ph.get('fetch_and_stage', 0):.2f} s, then the orders' apply, its commit (where the"
               f" deferred foreign keys are checked) and the run's end {ph.get('apply_incl_commit', 0):.2f} s.{aw_txt}"
               f" Apply statements {ph.get('apply_statements', 0):.2f} s in all."
               f" Sync worker CPU {w['cpu_seconds']:.1f} s, apply worker CPU"
               f" {(f.get('apply_worker') or {}).get('cpu_seconds', 0):.1f} s; the fake server's CPU {f.get('fake_cpu_seconds', 0):.1f} s"
               f" (all share {m['nproc']} cores). {f['api_requests']} requests, {f['bytes_received'] / 1e6:.1f} MB received (decompressed).")
    out.append("")
    prof = r.get("profile") or {}
    # Staging goes through the COPY machinery (src/pg/spi.cpp), which pg_stat_statements does not see.
    out.append("| Stream | Applied by | Pages | Rows staged | Apply started at | Apply statement |")
    out.append("|---|---|---|---|---|---|")
    for name, s in sorted(f["streams"].items(), key=lambda kv: kv[1].get("apply_start") or 0):
        who = "apply worker" if s.get("apply_worker") else "sync worker"
        out.append(f"| {name} | {who} | {s['pages']} | {s['rows_staged']:,} | {_s(s.get('apply_start'))} | {_s(s['apply_seconds'])} |")
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
    out.append("| Run | Wall | Start + locations | Fetch (applies as streams arrive) | Last apply, commit, end | Apply worker (catalog side; export done at) | Largest applies (rows staged, statement) |")
    out.append("|---|---|---|---|---|---|---|")
    for label, runs in (("nothing changed", r["incr_nothing"]), ("after a day", r["incr_day"])):
        for i, y in enumerate(runs):
            ph = y.get("phases", {})
            top = sorted(y["streams"].items(), key=lambda kv: -(kv[1].get("apply_seconds") or 0))[:3]
            aw = "–"
            if ph.get("apply_worker_start") is not None:
                aw = f"{ph['apply_worker_start']:.3f}–{ph['apply_worker_streams_end']:.3f} s"
                if ph.get("export_done") is not None:
                    aw += f"; {ph['export_done']:.3f} s"
            out.append(f"| {label} {i + 1} | {y['wall_seconds']:.3f} s | {ph.get('start_and_locations', 0):.3f} s"
                       f" | {ph.get('fetch_and_stage', 0):.3f} s | {ph.get('apply_incl_commit', 0):.3f} s | {aw} | "
                       + ", ".join(f"{n} ({v['rows_staged']:,}, {v.get('apply_seconds') or 0:.3f} s)" for n, v in top)
                       + " |")
    out.append("")
    out.append("Times are from the run's start (inside the sync worker). Each stream is applied as soon as its last page"
               " is in; \"Fetch\" ends when the last stream the sync worker applies starts its apply. In an incremental"
               " run the orders are walked first of the sales side, right after the catalog side, so that their apply,"
               " the longest, starts as early as it can; the small streams' transfers then in flight complete meanwhile,"
               " and their pages are staged and applied by the sync worker after it. The apply worker applies the catalog side (catalog, inventory, vendors) as soon as"
               " it is fetched, then rebuilds the item library export (`sync_runs.derived_at`).")
    out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(render(json.load(fh)))
