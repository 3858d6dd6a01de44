#!/usr/bin/env python3
"""Durable issuance under load (Specs/benchmarks.md, "Durable issuance"); run through `run.sh`.

For each backend asked for (`--backends sqlite,postgres,postgres-2`): starts `stagepass serve` on a free loopback
port with a fresh data directory (SQLite), or on a fresh database of a PostgreSQL server this script starts itself
(postgres.py: `initdb` + `pg_ctl` in a temp dir, fsync on), or two replicas sharing that database (postgres-2: one
master key, one key passphrase, one issuer; wrk drives both at once, half the connections each). Creates a user in
`developers`, signs in with password + TOTP, then runs wrk twice against the same broker(s): the RFC 8693 token
exchange for a `build` stage token (report.lua posts it with the session token) and `GET /healthz`. Every response
must be 200. After the brokers stop, `stagepass audit verify` must find the chain intact, and the audit log must
hold at least as many `token.issue` records as wrk counted 200s. Prints one table per run and, with --runs > 1, the
medians per backend.
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "interop"))

from broker import Broker, policy  # noqa: E402
from postgres import PostgresCluster  # noqa: E402


class Replica(Broker):
    """A broker of a replica set: the shared secrets come from the environment (CLI calls share them too)."""

    def __init__(self, *args, shared_env: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_env = shared_env

    def environment(self, extra: dict | None = None) -> dict:
        return super().environment({**self.shared_env, **(extra or {})})


def wrk(url: str, lua: Path, seconds: int, threads: int, connections: int, session: str | None) -> dict:
    env = dict(os.environ)
    env["BENCH_SESSION"] = session or ""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[len("WRKJSON "):])
            r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
            return r
    raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def audit_counts(b: Broker) -> tuple[str, int]:
    verify = b.cli("audit", "verify", *b.data_args(), check=False, timeout=600)
    if verify.returncode != 0:
        raise SystemExit(f"audit verify failed: {verify.stdout}{verify.stderr}")
    issued = 0
    export = b.cli("audit", "export", *b.data_args(), timeout=600)
    for line in export.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event", record)
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except ValueError:
                continue
        if event.get("action") == "token.issue" and event.get("result", "success") == "success":
            issued += 1
    return verify.stdout.strip(), issued


def batch_sizes(b: Broker) -> dict | None:
    """The `stagepass_issuance_batch_size` histogram from /metrics (commits, tokens, cumulative buckets), or None
    when the broker does not export it."""
    r = b.request("GET", "/metrics")
    if r.status != 200:
        return None
    buckets: dict[str, float] = {}
    count = total = None
    for line in r.text.splitlines():
        if line.startswith("stagepass_issuance_batch_size_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stagepass_issuance_batch_size_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stagepass_issuance_batch_size_sum"):
            total = float(line.rsplit(" ", 1)[1])
    if not count:
        return None
    return {"commits": int(count), "tokens": int(total or 0), "mean": (total or 0) / count, "buckets": buckets}


def describe_batches(h: dict) -> str:
    """"1: 3%, ≤2: 5%, …" (the share of commits whose batch held at most that many tokens)."""
    parts = [f"≤{le}: {100 * n / h['commits']:.0f}%" for le, n in h["buckets"].items() if le != "+Inf"]
    return f"{h['commits']} commits, {h['tokens']} tokens, mean batch {h['mean']:.1f} ({', '.join(parts)})"


def wrk_all(brokers: list[Broker], path: str, args, session: str | None) -> dict:
    """wrk against every broker at once (connections split evenly); rates add up, latencies are the worst."""
    if len(brokers) == 1:
        return wrk(brokers[0].url + path, HERE / "report.lua", args.seconds, args.threads, args.connections, session)
    import concurrent.futures
    per = max(1, args.connections // len(brokers))
    threads = max(1, args.threads // len(brokers))
    with concurrent.futures.ThreadPoolExecutor(len(brokers)) as pool:
        parts = list(pool.map(lambda b: wrk(b.url + path, HERE / "report.lua", args.seconds, threads, per, session),
                              brokers))
    out = {k: sum(p[k] for p in parts) for k in ("requests", "ok", "non200", "socket_errors", "rate")}
    out["p50_us"] = max(p["p50_us"] for p in parts)
    out["p99_us"] = max(p["p99_us"] for p in parts)
    out["first_bad"] = next((p["first_bad"] for p in parts if p["first_bad"]), "")
    out["duration_us"] = max(p["duration_us"] for p in parts)
    return out


def one_run(args, backend: str, n: int, cluster: PostgresCluster | None) -> dict:
    base = Path(args.workdir) if args.workdir else None
    with tempfile.TemporaryDirectory(prefix="stagepass-bench-", dir=base) as tmp:
        brokers: list[Broker] = []
        if backend == "sqlite":
            serve_args = ["--database", args.database] if args.database else []
            brokers.append(Broker(args.bin, Path(tmp) / "b0", policy(), serve_args=serve_args))
        else:
            url = cluster.create_database()
            env = {"STAGEPASS_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
                   "STAGEPASS_KEY_PASSPHRASE": "a benchmark passphrase"}
            count = 2 if backend == "postgres-2" else 1
            for i in range(count):
                r = Replica(args.bin, Path(tmp) / f"b{i}", policy(), database=url, shared_env=env)
                brokers.append(r)
        try:
            for i, each in enumerate(brokers):
                if i:
                    # One issuer for the set (the first replica's URL); the first replica bootstrapped the admin.
                    each.serve_args = [*each.serve_args, "--issuer", brokers[0].url]
                    each.admin = brokers[0].admin
                each.start()
            b = brokers[0]
            user = b.add_user("bench", ["developers"])
            session = b.sign_in(user)
            for each in brokers:
                probe = each.exchange(session, "builder", "build")
                if probe.status != 200:
                    raise SystemExit(f"token exchange refused: {probe.status} {probe.text}")
            issue = wrk_all(brokers, "/v1/token", args, session)
            batches = batch_sizes(b)
            health = wrk_all(brokers, "/healthz", args, None)
        finally:
            for each in reversed(brokers):
                each.stop()
        chain, issued = audit_counts(brokers[0])
        ok = issue["non200"] == 0 and health["non200"] == 0 and issue["socket_errors"] == 0 \
            and health["socket_errors"] == 0 and issued >= issue["ok"] + len(brokers)
        return {"backend": backend, "run": n, "issue": issue, "healthz": health, "audit": chain,
                "token_issue_records": issued, "batches": batches, "checks_passed": ok}


def table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| backend, run | issuance tokens/s | p50 ms | p99 ms | healthz req/s | p50 ms | p99 ms | issuance/healthz |",
             "|---|---|---|---|---|---|---|---|"]
    for name, i, h in rows:
        lines.append(f"| {name} | {i['rate']:.0f} | {i['p50_us'] / 1000:.2f} | {i['p99_us'] / 1000:.2f} | "
                     f"{h['rate']:.0f} | {h['p50_us'] / 1000:.2f} | {h['p99_us'] / 1000:.2f} | "
                     f"{i['rate'] / h['rate']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the stagepass binary (release build)")
    p.add_argument("--database", help="sqlite backend only: passed to `stagepass serve --database`")
    p.add_argument("--backends", default="sqlite",
                   help="comma-separated: sqlite, postgres (one broker), postgres-2 (two replicas); default sqlite")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--workdir", help="where the fresh data directories go (default: the system temp dir)")
    p.add_argument("--json", help="also write every run's figures to this file")
    args = p.parse_args()

    backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    unknown = set(backends) - {"sqlite", "postgres", "postgres-2"}
    if unknown:
        raise SystemExit(f"unknown backend(s): {', '.join(sorted(unknown))}")
    cluster = PostgresCluster().start() if any(x.startswith("postgres") for x in backends) else None
    results = []
    try:
        for backend in backends:
            for n in range(1, args.runs + 1):
                r = one_run(args, backend, n, cluster)
                results.append(r)
                print(table([(f"{backend} {n}", r["issue"], r["healthz"])]))
                print(f"  issuance: {r['issue']['ok']} × 200, {r['issue']['non200']} other, "
                      f"{r['issue']['socket_errors']} socket errors; healthz: {r['healthz']['non200']} non-200; "
                      f"{r['audit']}; token.issue records: {r['token_issue_records']}"
                      + ("" if r["checks_passed"] else "  ** CHECK FAILED **"))
                if r["batches"]:
                    print(f"  group commit: {describe_batches(r['batches'])}")
                if r["issue"]["first_bad"]:
                    print(f"  first non-200 issuance response: {r['issue']['first_bad']}")
                sys.stdout.flush()
                time.sleep(1)
    finally:
        if cluster:
            cluster.stop()
    rows = []
    for backend in backends:
        mine = [r for r in results if r["backend"] == backend]
        med = {}
        for kind in ("issue", "healthz"):
            med[kind] = {k: statistics.median(r[kind][k] for r in mine) for k in ("rate", "p50_us", "p99_us")}
        rows.append((f"{backend} (median of {len(mine)})", med["issue"], med["healthz"]))
    print(f"\nmedians ({args.connections} connections, {args.seconds} s per wrk run):")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not all(r["checks_passed"] for r in results):
        raise SystemExit("a check failed: see above")


if __name__ == "__main__":
    main()
