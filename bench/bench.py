#!/usr/bin/env python3
"""Helpers of bench/run: peer task files, a free subnet pool, scaling recorded engine output,
reading hyperfine and /usr/bin/time results, and the table. Arithmetic only; every command
being measured is run by bench/run."""

import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

from table import table

# ---- peer task files ----------------------------------------------------------------------


def write_peers(out, builtin, total, client_vars):
    """Four equivalent task files with `total` targets each: a justfile, a Taskfile, a Makefile,
    and agency site tasks. The targets are agency's built-in tasks (so `-n create-client` runs
    the real one) plus bench-NN tasks up to `total`. In the peers, create-client holds the
    shell a site would write for it (directories, four labelled networks, files)."""
    os.makedirs(os.path.join(out, "site", "tasks"), exist_ok=True)
    extra = [f"bench-{i:02d}" for i in range(1, max(0, total - len(builtin)) + 1)]
    names = list(builtin) + extra
    desc = {n: f"Bench target {n}" for n in names}
    desc["create-client"] = "Create a new client with full isolation"

    def create_client_lines(var):
        v = {k: var(k) for k in ("CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN")}
        root = "${AGENCY_ROOT:-/opt/agency_stack}"
        lines = [
            f'mkdir -p -m 0750 "{root}/clients/{v["CLIENT_ID"]}/keycloak" "{root}/clients/{v["CLIENT_ID"]}/backup"',
            f'mkdir -p -m 0700 "{root}/secrets/{v["CLIENT_ID"]}"',
        ]
        for tier, internal in (("frontend", ""), ("backend", " --internal"), ("database", " --internal"), ("network", "")):
            lines.append(
                f"docker network inspect {v['CLIENT_ID']}_{tier} >/dev/null 2>&1 || docker network create{internal} "
                f"--label agency.managed=true --label agency.client={v['CLIENT_ID']} --label agency.tier={tier} "
                f"{v['CLIENT_ID']}_{tier}"
            )
        lines.append(
            f"printf \"CLIENT_ID='%s'\\nCLIENT_NAME='%s'\\nCLIENT_DOMAIN='%s'\\n\" \"{v['CLIENT_ID']}\" "
            f"\"{v['CLIENT_NAME']}\" \"{v['CLIENT_DOMAIN']}\" > \"{root}/clients/{v['CLIENT_ID']}/client.env\""
        )
        return lines

    def other_lines(name):
        return [f'echo "{name}: nothing to do"']

    # justfile
    just = ["set positional-arguments := false", ""]
    for n in names:
        just.append(f"# {desc[n]}")
        if n == "create-client":
            just.append("create-client CLIENT_ID CLIENT_NAME CLIENT_DOMAIN:")
            body = create_client_lines(lambda k: "{{" + k + "}}")
        else:
            just.append(f"{n}:")
            body = other_lines(n)
        just += ["    " + line for line in body] + [""]
    with open(os.path.join(out, "justfile"), "w") as f:
        f.write("\n".join(just))

    # Taskfile.yml
    task = ["version: '3'", "", "tasks:"]
    for n in names:
        task.append(f"  {n}:")
        task.append(f"    desc: {desc[n]}")
        if n == "create-client":
            task.append("    requires:")
            task.append("      vars: [CLIENT_ID, CLIENT_NAME, CLIENT_DOMAIN]")
            body = create_client_lines(lambda k: "{{.%s}}" % k)
        else:
            body = other_lines(n)
        task.append("    cmds:")
        task += ["      - " + json.dumps(line) for line in body]
    with open(os.path.join(out, "Taskfile.yml"), "w") as f:
        f.write("\n".join(task) + "\n")

    # Makefile
    make = [".PHONY: " + " ".join(names), ""]
    for n in names:
        make.append(f"## {desc[n]}")
        make.append(f"{n}:")
        body = create_client_lines(lambda k: "$(%s)" % k) if n == "create-client" else other_lines(n)
        make += ["\t" + line.replace("${AGENCY_ROOT:-/opt/agency_stack}", "$${AGENCY_ROOT:-/opt/agency_stack}") for line in body]
        make.append("")
    with open(os.path.join(out, "Makefile"), "w") as f:
        f.write("\n".join(make))

    # agency site tasks for the bench-NN targets (the built-in ones are compiled in)
    for n in extra:
        with open(os.path.join(out, "site", "tasks", f"{n}.toml"), "w") as f:
            f.write(f'description = "{desc[n]}"\ngroup = "bench"\nlock = "none"\n')
            f.write(f"script = '''\nprint(\"{n}: nothing to do\");\n#{{ ok: true }}\n'''\n")
    print(len(names))


# ---- a free subnet pool -------------------------------------------------------------------


def free_pool(prefix_len):
    """A 10.x.0.0/prefix_len that overlaps no route of this host and no Docker network."""
    taken = []
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        word = line.split()[0] if line.split() else ""
        if word != "default":
            try:
                taken.append(ipaddress.ip_network(word if "/" in word else word + "/32", strict=False))
            except ValueError:
                pass
    ids = subprocess.run(["docker", "network", "ls", "-q", "--no-trunc"], capture_output=True, text=True).stdout.split()
    if ids:
        out = subprocess.run(["docker", "network", "inspect", *ids], capture_output=True, text=True).stdout
        for net in json.loads(out or "[]"):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                try:
                    taken.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
                except ValueError:
                    pass
    for second in range(250, 100, -1):
        pool = ipaddress.ip_network(f"10.{second}.0.0/{prefix_len}", strict=False)
        if not any(pool.overlaps(t) for t in taken if t.version == 4):
            print(pool)
            return
    sys.exit("no free 10.x.0.0/16 pool found")


# ---- scaling recorded engine output and client files ----------------------------------------


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def scaled_id(prefix, i):
    return f"{prefix}-r{i:05d}"


def scale_docker(recorded, out, prefix, template, count):
    """Scales the answers bench/docker-replay recorded to `count` clients. Every object of the
    bench's own clients is dropped, the template client's are repeated once per scaled client
    (its id replaced, each Docker ID mapped to one fresh ID per client, the same in every
    answer), and every other object (the engine's own networks, other people's) is kept.

    A call naming objects after `--` (`inspect -- <ids>`) is answered for any list of them:
    its objects go into a table (table-N.args: the arguments up to `--`; table-N/: one file per
    id and name), line per object for `--format`, else the pieces of docker's indented JSON
    array, so bench/docker-replay answers with one `cat`. Every other call keeps its
    argument line and gets its output scaled line by line (`{{json .}}` lines, `-q` IDs)."""
    os.makedirs(out, exist_ok=True)
    calls = []
    for name in sorted(os.listdir(recorded)):
        if name.endswith(".args"):
            base = os.path.join(recorded, name[: -len(".args")])
            with open(base + ".args") as f:
                args = f.read().rstrip("\n")
            with open(base + ".out") as f:
                output = f.read()
            with open(base + ".rc") as f:
                rc = f.read().strip()
            calls.append((args, output, rc))
    bench_name = re.compile(re.escape(prefix) + r"-")
    ids = [set(), set()]  # [the template's Docker IDs, the other bench clients' ones]
    for _, output, _ in calls:
        for text, oid in docker_objects(output):
            if oid and bench_name.search(text):
                ids[template not in text].add(oid)
    scaled_ids = {}
    for i in range(1, count + 1):
        cid = scaled_id(prefix, i)
        scaled_ids[cid] = {oid: sha(oid + cid) for oid in ids[0]}

    def owner(text):
        """0: the template's, 1: another bench client's, 2: nobody's (kept as it is)."""
        if template in text or any(oid in text for oid in ids[0]):
            return 0
        if bench_name.search(text) or any(oid in text for oid in ids[1]):
            return 1
        return 2

    def copies(text):
        """The text of one object for each client it stands for."""
        kind = owner(text)
        if kind == 2:
            return [text]
        if kind == 1:
            return []
        result = []
        for cid, mapping in scaled_ids.items():
            copy = text.replace(template, cid)
            for oid, new in mapping.items():
                copy = copy.replace(oid, new)
            result.append(copy)
        return result

    tables = 0
    for n, (args, output, rc) in enumerate(calls):
        if " -- " in args:
            write_table(os.path.join(out, f"table-{tables}"), args, output, copies)
            tables += 1
            continue
        with open(os.path.join(out, f"call-{n}.args"), "w") as f:
            f.write(args + "\n")
        with open(os.path.join(out, f"call-{n}.rc"), "w") as f:
            f.write(rc + "\n")
        with open(os.path.join(out, f"call-{n}.out"), "w") as f:
            for line in output.splitlines():
                for copy in copies(line):
                    f.write(copy + "\n")


def docker_objects(output):
    """(text, Docker ID) of each object in an answer: the elements of a JSON array, else its
    lines (the ID of a `{{json .}}` line, a `-q` line, or a `--format` line's first field)."""
    if output.lstrip().startswith("["):
        return [(json.dumps(o), o.get("Id", "")) for o in json.loads(output)]
    objects = []
    for line in output.splitlines():
        first = line.split("\t", 1)[0]
        try:
            oid = json.loads(first).get("ID", "")
        except (ValueError, AttributeError):
            oid = first if re.fullmatch(r"[0-9a-f]{64}", first) else ""
        objects.append((line, oid))
    return objects


def write_table(table, args, output, copies):
    """The objects of an `inspect -- <ids>` answer, by ID and name, for bench/docker-replay:
    first/ and rest/ (with the separating comma) hold the pieces of a JSON array, lines/ a
    `--format` line."""
    requested = args.split(" -- ", 1)[1].split()
    with open(table + ".args", "w") as f:
        f.write(args.split(" -- ", 1)[0] + " --\n")
    if output.lstrip().startswith("["):
        os.makedirs(os.path.join(table, "first"))
        os.makedirs(os.path.join(table, "rest"))
        for obj in json.loads(output):
            for copy in copies(json.dumps(obj)):
                scaled = json.loads(copy)
                # docker's own layout: the array's elements indented by four spaces
                text = "    " + json.dumps(scaled, indent=4).replace("\n", "\n    ")
                for key in {scaled["Id"], scaled.get("Name", "").lstrip("/")} - {""}:
                    with open(os.path.join(table, "first", key), "w") as f:
                        f.write(text)
                    with open(os.path.join(table, "rest", key), "w") as f:
                        f.write(",\n" + text)
        return
    os.makedirs(os.path.join(table, "lines"))
    lines = output.splitlines()
    if len(lines) != len(requested):
        sys.exit(f"scale-docker: `docker {args[:60]}...` answered {len(lines)} lines for {len(requested)} objects")
    for key, line in zip(requested, lines):
        # the name or ID asked for and its line are one object: scaled together
        for copy in copies(key + "\n" + line):
            scaled_key, scaled_line = copy.split("\n", 1)
            with open(os.path.join(table, "lines", scaled_key), "w") as f:
                f.write(scaled_line + "\n")


def scale_files(pairs, prefix, template, count, pool):
    """Copies the template client's files from each source root to the matching destination
    root once per scaled client, its id replaced in paths and contents, modes kept; client.env
    subnets get distinct blocks of `pool`. Of the restic repository only config, keys/ and
    snapshots/ are copied (what status looks at)."""
    blocks = ipaddress.ip_network(pool).subnets(new_prefix=26)
    subnet_keys = ["FRONTEND_SUBNET", "BACKEND_SUBNET", "DATABASE_SUBNET", "CLIENT_SUBNET"]
    bridge_keys = ["FRONTEND_BRIDGE", "BACKEND_BRIDGE", "DATABASE_BRIDGE", "CLIENT_BRIDGE"]
    entries = []  # (source root, destination root, relative path, is_dir, mode, contents)
    for src_root, dst_root in pairs:
        os.makedirs(dst_root, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(src_root):
            rel = os.path.relpath(dirpath, src_root)
            inside = any(template in part for part in rel.split(os.sep))
            if inside and os.path.basename(dirpath) in ("data", "index", "locks"):
                dirnames[:] = []
                continue
            if inside:
                entries.append((dst_root, rel, True, os.stat(dirpath).st_mode & 0o7777, None))
            if inside or any(template in fn for fn in filenames):
                # the parents of the client's trees (clients/, secrets/ ...), with their modes
                parent = os.path.dirname(rel) if inside else rel
                chain = []
                while parent not in ("", "."):
                    chain.append(parent)
                    parent = os.path.dirname(parent)
                for part in reversed(chain):
                    if template not in part and not os.path.isdir(os.path.join(dst_root, part)):
                        os.makedirs(os.path.join(dst_root, part))
                        os.chmod(os.path.join(dst_root, part), os.stat(os.path.join(src_root, part)).st_mode & 0o7777)
            for fn in filenames:
                if inside or template in fn:
                    path = os.path.join(dirpath, fn)
                    with open(path, "rb") as f:
                        entries.append((dst_root, os.path.join(rel, fn), False, os.stat(path).st_mode & 0o7777, f.read()))
    # paths recorded inside files (backup/config.sh, logrotate policies) move with the roots
    roots_by_length = sorted(pairs, key=lambda p: -len(p[0]))
    for i in range(1, count + 1):
        cid = scaled_id(prefix, i)
        subnets = [str(next(blocks)) for _ in subnet_keys]
        for dst_root, rel, is_dir, mode, data in entries:
            dst = os.path.join(dst_root, rel.replace(template, cid))
            if is_dir:
                os.makedirs(dst, exist_ok=True)
                os.chmod(dst, mode)
                continue
            data = data.replace(template.encode(), cid.encode())
            for src_root, new_root in roots_by_length:
                data = data.replace(src_root.encode(), new_root.encode())
            if os.path.basename(dst) == "client.env":
                text = data.decode()
                for key, bridge, subnet in zip(subnet_keys, bridge_keys, subnets):
                    text = re.sub(rf"^{key}='[^']*'$", f"{key}='{subnet}'", text, flags=re.M)
                    # the bridge named after its subnet, as create-client names it
                    name = "agb-%08x" % int(ipaddress.ip_network(subnet).network_address)
                    text = re.sub(rf"^{bridge}='[^']*'$", f"{bridge}='{name}'", text, flags=re.M)
                data = text.encode()
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(dst, mode)


# ---- results --------------------------------------------------------------------------------


def hyperfine_stats(path):
    with open(path) as f:
        result = json.load(f)["results"][0]
    times = result["times"]
    return {"median_ms": statistics.median(times) * 1000, "runs": len(times),
            "min_ms": min(times) * 1000, "max_ms": max(times) * 1000}


def rss_kb(path):
    with open(path) as f:
        for line in f:
            if "Maximum resident set size" in line:
                return int(line.rsplit(":", 1)[1])
    return None


def record(args):
    rec = {"section": args.section, "label": args.label}
    if args.hyperfine:
        rec.update(hyperfine_stats(args.hyperfine))
    if args.times:
        times = [float(t) for t in args.times.split(",") if t]
        rec.update({"median_ms": statistics.median(times), "runs": len(times), "min_ms": min(times), "max_ms": max(times)})
    if args.rss:
        rec["rss_kb"] = rss_kb(args.rss)
    if args.docker_calls is not None and args.docker_calls != "":
        rec["docker_calls"] = int(args.docker_calls)
    for kv in args.extra or []:
        k, v = kv.split("=", 1)
        rec[k] = v
    with open(args.results, "a") as f:
        f.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("peers")
    s.add_argument("out")
    s.add_argument("--total", type=int, default=20)
    s.add_argument("names", nargs="*")
    s = sub.add_parser("free-pool")
    s.add_argument("--prefix", type=int, default=16)
    s = sub.add_parser("scale-docker")
    s.add_argument("recorded")
    s.add_argument("out")
    s.add_argument("--prefix", required=True)
    s.add_argument("--template", required=True)
    s.add_argument("--count", type=int, required=True)
    s = sub.add_parser("scale-files")
    s.add_argument("--pairs", nargs="+", required=True, help="SRC_ROOT:DST_ROOT")
    s.add_argument("--prefix", required=True)
    s.add_argument("--template", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--pool", required=True)
    s = sub.add_parser("record")
    s.add_argument("results")
    s.add_argument("--section", required=True)
    s.add_argument("--label", required=True)
    s.add_argument("--hyperfine")
    s.add_argument("--times", help="comma-separated milliseconds")
    s.add_argument("--rss")
    s.add_argument("--docker-calls")
    s.add_argument("--extra", nargs="*")
    s = sub.add_parser("table")
    s.add_argument("results")
    s.add_argument("--targets", default="20")
    s.add_argument("--startup-runs", default="40")
    s.add_argument("--clients", default="100")
    s = sub.add_parser("median")
    s.add_argument("values", nargs="+", type=float)
    a = ap.parse_args()
    if a.cmd == "peers":
        write_peers(a.out, a.names, a.total, None)
    elif a.cmd == "free-pool":
        free_pool(a.prefix)
    elif a.cmd == "scale-docker":
        scale_docker(a.recorded, a.out, a.prefix, a.template, a.count)
    elif a.cmd == "scale-files":
        scale_files([tuple(x.split(":", 1)) for x in a.pairs], a.prefix, a.template, a.count, a.pool)
    elif a.cmd == "record":
        record(a)
    elif a.cmd == "table":
        table(a)
    elif a.cmd == "median":
        print(statistics.median(a.values))


if __name__ == "__main__":
    main()
