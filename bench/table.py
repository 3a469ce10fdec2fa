"""The table bench/run prints: one section per measurement, each with its target and verdict,
then every target once more in a closing list. Reads the results file `bench.py record`
appends to; a section whose rows are missing (its part of the bench did not run) is left out,
and its targets are listed as not measured."""

import json


def ms(value):
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def verdict(ok):
    return "MET" if ok else "NOT MET"


def ratio(r):
    return "-" if r is None else f"{r:.2f}x"


class Table:
    def __init__(self, records):
        self.by = {}
        for r in records:
            self.by.setdefault(r["section"], []).append(r)
        self.lines = []
        # (what, verdict or None when not measured, the measured value as text)
        self.targets = []

    def rows(self, section):
        return self.by.get(section, [])

    def get(self, section, label):
        return next((r for r in self.rows(section) if r["label"] == label), None)

    def p(self, line=""):
        self.lines.append(line)

    def target(self, what, ok, value):
        """Records a target; `ok` None: not measured in this run. Returns the verdict text."""
        text = "not measured" if ok is None else verdict(ok)
        self.targets.append((what, text, value))
        return text

    def row(self, r, *columns):
        note = f" [{r['note']}]" if r.get("note") else ""
        self.p(f"   {r['label'] + note:<58} " + " ".join(columns))


def startup(t, args):
    if not t.rows("startup"):
        t.target("startup: agency --list no slower than just --list", None, "-")
        return
    t.p(f"1. Startup on equivalent {args.targets}-target files (median of {args.startup_runs} runs, hyperfine -N)")
    t.p(f"   {'command':<58} {'median':>9} {'vs just':>8} {'peak RSS':>9}")
    results = {}
    for group, just_label in (("list", "just --list"), ("dry", "just -n create-client")):
        base = t.get("startup", just_label)
        for r in [r for r in t.rows("startup") if r.get("group") == group]:
            x = r["median_ms"] / base["median_ms"] if base else None
            results[r["label"]] = x
            t.row(r, f"{ms(r['median_ms']):>9} {ratio(x):>8} {mb(r.get('rss_kb')):>9}")
        t.p()
    listing = results.get("agency --list")
    dry = results.get("agency -n create-client")
    # The runner's own cost of a dry run: the replayed run minus its calls to the stand-in.
    standin = t.get("startup", "docker stand-in, one replayed call")
    replayed = t.get("startup", "agency -n create-client, docker replayed")
    just_dry = t.get("startup", "just -n create-client")
    own_ratio = None
    if standin and replayed and just_dry:
        own = replayed["median_ms"] - int(standin["calls"]) * standin["median_ms"]
        own_ratio = own / just_dry["median_ms"]
        t.p(f"   {'docker stand-in, one replayed call':<58} {ms(standin['median_ms']):>9}")
        t.p(f"   {'agency -n create-client, own (replayed - ' + standin['calls'] + ' x stand-in)':<58}"
            f" {ms(own):>9} {ratio(own_ratio):>8}")
        t.p()
    a = t.target("startup: agency --list no slower than just --list", listing is not None and listing <= 1.0, ratio(listing))
    b = t.target("startup: agency -n create-client no slower than just -n", dry is not None and dry <= 1.0,
                 f"{ratio(dry)} with the real engine, whose reads just does not make; the runner's own cost {ratio(own_ratio)}")
    t.p(f"   target no slower than just: --list {a} ({ratio(listing)}); -n create-client {b} ({ratio(dry)})")
    t.p()


def status(t, args):
    rows = [r for r in t.rows("status") if r.get("who") == "agency"]
    rows.sort(key=lambda r: (r.get("engine") != "real", int(r["clients"])))
    replay = {int(r["clients"]): r for r in rows if r.get("engine") == "replayed"}
    if rows:
        t.p("2. multi-tenancy-status, all clients (agency: median of hyperfine runs; baseline: one `docker network ls | grep` per client)")
        t.p(f"   {'engine':<10} {'clients':>7} {'agency':>9} {'docker':>7} {'peak RSS':>9} {'baseline':>9} {'docker':>7} {'peak RSS':>9} {'speed-up':>9}")
    speedup_100 = None
    calls = []
    for r in rows:
        b = next((x for x in t.rows("status") if x.get("who") == "baseline" and x["clients"] == r["clients"]
                  and x.get("engine") == r.get("engine")), None)
        sp = b["median_ms"] / r["median_ms"] if b else None
        if r.get("engine") == "real":
            calls.append(r.get("docker_calls"))
            if r["clients"] == "100":
                speedup_100 = sp
        t.p(f"   {r.get('engine'):<10} {r['clients']:>7} {ms(r['median_ms']):>9} {r.get('docker_calls', '-'):>7} {mb(r.get('rss_kb')):>9}"
            f" {ms(b['median_ms']) if b else '-':>9} {b.get('docker_calls', '-') if b else '-':>7} {mb(b.get('rss_kb')) if b else '-':>9}"
            f" {('%.0fx' % sp) if sp else '-':>9}")
    if rows:
        t.p()
    per_kb = None
    if len(replay) >= 2:
        lo, hi = min(replay), max(replay)
        per = (replay[hi]["median_ms"] - replay[lo]["median_ms"]) / (hi - lo)
        each = ", ".join(f"{k}: {replay[k]['median_ms'] / k * 1000:.0f} µs/client" for k in sorted(replay))
        t.p(f"   replayed engine: {per * 1000:.0f} µs per client between {lo} and {hi} clients; {each}")
        if replay[lo].get("rss_kb") and replay[hi].get("rss_kb"):
            per_kb = (replay[hi]["rss_kb"] - replay[lo]["rss_kb"]) / (hi - lo)
            t.p(f"   peak memory per client: {per_kb:.1f} KB ({per_kb * 1000 / 1024:.1f} MB per 1,000 clients, between {lo} and {hi})")
    # The same count at every size; at least one call: a runner that no longer reached docker
    # through PATH would count 0.
    o1 = len(set(calls)) == 1 and calls[0] is not None and int(calls[0]) >= 1
    big = replay.get(5000)
    counted = ", ".join(str(c) for c in calls) + " at " + ", ".join(r["clients"] for r in rows if r.get("engine") == "real")
    a = t.target("status: O(1) docker calls", o1 if calls else None, counted + " clients" if calls else "-")
    b = t.target("status: >= 10x faster than the baseline at 100 clients", None if speedup_100 is None else speedup_100 >= 10,
                 "%.0fx" % speedup_100 if speedup_100 else "-")
    c = t.target("status: under 0.5 s at 5,000 clients (replayed)", None if big is None else big["median_ms"] < 500,
                 ms(big["median_ms"]) if big else "-")
    d = t.target("status: under 64 MB peak RSS at 5,000 clients (replayed)",
                 None if not big or big.get("rss_kb") is None else big["rss_kb"] < 64 * 1024,
                 mb(big.get("rss_kb")) if big else "-")
    if rows:
        t.p(f"   target O(1) docker calls: {a}; >=10x faster than the baseline at 100: {b};"
            f" at 5,000: under 0.5 s {c}, under 64 MB {d}")
        t.p()


def create(t, args):
    cc = t.get("create", "agency create-client (new client)")
    nets = t.get("create", "4 x docker network create, alone")
    restic = t.get("create", "restic init, alone")
    if not (cc and nets and restic):
        t.target("create-client <= 1.15 x max(restic init, 4 network creates)", None, "-")
        return
    t.p(f"3. create-client of a new client with {args.clients} clients on the engine (median of {cc['runs']}, interleaved)")
    t.p(f"   {'':<58} {'median':>9} {'docker':>7} {'peak RSS':>9}")
    for r in (cc, nets, restic):
        t.row(r, f"{ms(r['median_ms']):>9} {r.get('docker_calls', '-'):>7} {mb(r.get('rss_kb')):>9}")
    slowest = max(nets["median_ms"], restic["median_ms"])
    x = cc["median_ms"] / slowest
    total = nets["median_ms"] + restic["median_ms"]
    t.p(f"   against the sum of the parts ({ms(total)}): {cc['median_ms'] - total:+.0f} ms;"
        f" against the slower part alone ({ms(slowest)}): {x:.2f}x")
    # restic init is mostly key derivation, whose time varies from run to run.
    t.p(f"   (restic init alone ranged {ms(restic['min_ms'])} to {ms(restic['max_ms'])})")
    v = t.target("create-client <= 1.15 x max(restic init, 4 network creates)", x <= 1.15, f"{x:.2f}x")
    t.p(f"   target <= 1.15 x the slower part (the two run at once): {v}")
    t.p()


def noop(t, args):
    r = t.get("noop", "agency create-client (existing client, no-op)")
    if not r:
        t.target("create-client of an existing client under 100 ms", None, "-")
        return
    t.p(f"4. create-client again on an existing client (median of {r['runs']})")
    t.row(r, f"{ms(r['median_ms']):>9} {r.get('docker_calls', '-'):>7} {mb(r.get('rss_kb')):>9}")
    t.p(f"   target under 100 ms: {t.target('create-client of an existing client under 100 ms', r['median_ms'] < 100, ms(r['median_ms']))}")
    t.p()


def by_clients(t, section, title, clients, limit_ms, what, columns):
    """A section of rows at several client counts, judged at `clients`: median under `limit_ms`."""
    rows = sorted(t.rows(section), key=lambda r: int(r.get("clients", 0)))
    judged = next((r for r in rows if int(r.get("clients", 0)) == clients), None)
    if rows:
        t.p(title)
        for r in rows:
            t.row(r, columns(r))
    limit = f"{limit_ms / 1000:g} s" if limit_ms >= 1000 else f"{limit_ms:g} ms"
    target = f"under {limit} at {clients:,} clients"
    v = t.target(f"{what} {target}", None if judged is None else judged["median_ms"] < limit_ms,
                 ms(judged["median_ms"]) if judged else "-")
    if rows:
        t.p(f"   target {target}: {v}")
        t.p()


def firewall(t, args):
    by_clients(t, "firewall", "5. setup-firewall: agency's nftables table from every client's record, replaced in one nft -f (median)",
               1000, 100, "setup-firewall", lambda r: f"{ms(r['median_ms']):>9} {'':>7} {mb(r.get('rss_kb')):>9}")


def probe(t, args):
    by_clients(t, "probe", "6. multi-tenancy-status PROBE=1: packets on every path of every client (real clients, median)",
               50, 10_000, "PROBE=1", lambda r: f"{ms(r['median_ms']):>9} {r['runs']:>5} {mb(r.get('rss_kb')):>9}")


def logs(t, args):
    rows = t.rows("logs")
    if rows:
        t.p("7. collect-logs: the ingress's access log split into 100 clients' access.log, from no cursor (median)")
        for r in rows:
            t.row(r, f"{ms(r['median_ms']):>9} {r.get('docker_calls', '-'):>7} {mb(r.get('rss_kb')):>9}")
    v = t.target("collect-logs of 100,000 lines for 100 clients under 1 s", rows[0]["median_ms"] < 1000 if rows else None,
                 ms(rows[0]["median_ms"]) if rows else "-")
    if rows:
        lines_per_s = 100_000 / (rows[0]["median_ms"] / 1000)
        t.p(f"   {lines_per_s:,.0f} lines per second; target under 1 s: {v}")
        t.p()


def data(t, args):
    agency = next((r for r in t.rows("data") if r.get("who") == "agency"), None)
    plain = next((r for r in t.rows("data") if r.get("who") == "plain"), None)
    if not (agency and plain):
        t.target("dump + backup of 200 MB: <= 10% over the plain pipe", None, "-")
        return
    t.p(f"8. dump + backup of a {agency.get('megabytes', '200')} MB MariaDB database into the client's repository (median of {agency['runs']}, interleaved)")
    for r in (agency, plain):
        t.row(r, f"{ms(r['median_ms']):>9} {r['runs']:>5}")
    over = (agency["median_ms"] - plain["median_ms"]) / plain["median_ms"] * 100
    v = t.target("dump + backup of 200 MB: <= 10% over the plain pipe", over <= 10, f"{over:+.1f}%")
    t.p(f"   agency over the plain pipe: {agency['median_ms'] - plain['median_ms']:+.0f} ms = {over:+.1f}%; target <= 10%: {v}")
    t.p()


def stacks(t, args):
    rows = t.rows("stacks")
    noop = next((r for r in rows if "no-op" in r["label"]), None)
    first = next((r for r in rows if r["label"].startswith("deploy-client, first")), None)
    plain = next((r for r in rows if r is not noop and r is not first), None)
    if rows:
        t.p("9. deploy-client of a 2-service busybox stack (bench/stacks; first deploys interleaved with the plain command)")
        t.p(f"   {'':<58} {'median':>9} {'runs':>5} {'docker':>7}")
        for r in (noop, first, plain):
            if r:
                t.row(r, f"{ms(r['median_ms']):>9} {r['runs']:>5} {r.get('docker_calls', '-'):>7}")
    a = t.target("deploy-client of an up-to-date stack under 300 ms", None if noop is None else noop["median_ms"] < 300,
                 ms(noop["median_ms"]) if noop else "-")
    over = (first["median_ms"] - plain["median_ms"]) / plain["median_ms"] * 100 if first and plain else None
    b = t.target("first deploy-client <= 10% over the plain Compose command", None if over is None else over <= 10,
                 "-" if over is None else f"{over:+.1f}%")
    if rows:
        t.p(f"   target no-op under 300 ms: {a}")
        if over is not None:
            t.p(f"   first deploy over the plain command: {first['median_ms'] - plain['median_ms']:+.0f} ms = {over:+.1f}%;"
                f" target <= 10%: {b}")
        t.p()


def table(args):
    t = Table([json.loads(line) for line in open(args.results) if line.strip()])
    for r in t.rows("machine"):
        t.p(r["label"])
    t.p()
    for section in (startup, status, create, noop, firewall, probe, logs, data, stacks):
        section(t, args)
    if t.rows("startup"):
        t.p("10. Peak memory: the peak RSS columns above (/usr/bin/time -v, one run each; for the baseline the largest process it started)")
    for r in t.rows("notes"):
        t.p("   " + r["label"])
    t.p()
    t.p("Targets")
    met = sum(1 for _, v, _ in t.targets if v == "MET")
    for what, text, value in t.targets:
        t.p(f"   {text:<12} {what} ({value})")
    t.p(f"   {met} of {len(t.targets)} met")
    print("\n".join(t.lines))
