#!/usr/bin/env python3
"""Durable issuance under load (Specs/benchmarks.md, "Durable issuance"); run through `run.sh`.

Starts `stagepass serve` on a free loopback port with a fresh data directory, creates a user in `developers`, signs
in with password + TOTP, then runs wrk twice against the same broker: the RFC 8693 token exchange for a `build`
stage token (report.lua posts it with the session token) and `GET /healthz`. Every response must be 200. After the
broker stops, `stagepass audit verify` must find the chain intact, and the audit log must hold at least as many
`token.issue` records as wrk counted 200s. Prints one table per run and, with --runs > 1, the medians.
"""

import argparse
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
    verify = b.cli("audit", "verify", "--data", str(b.data), check=False, timeout=600)
    if verify.returncode != 0:
        raise SystemExit(f"audit verify failed: {verify.stdout}{verify.stderr}")
    issued = 0
    export = b.cli("audit", "export", "--data", str(b.data), timeout=600)
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


def one_run(args, n: int) -> dict:
    base = Path(args.workdir) if args.workdir else None
    with tempfile.TemporaryDirectory(prefix="stagepass-bench-", dir=base) as tmp:
        serve_args = ["--database", args.database] if args.database else []
        b = Broker(args.bin, Path(tmp), policy(), serve_args=serve_args)
        b.start()
        try:
            user = b.add_user("bench", ["developers"])
            session = b.sign_in(user)
            probe = b.exchange(session, "builder", "build")
            if probe.status != 200:
                raise SystemExit(f"token exchange refused: {probe.status} {probe.text}")
            lua = HERE / "report.lua"
            issue = wrk(b.url + "/v1/token", lua, args.seconds, args.threads, args.connections, session)
            batches = batch_sizes(b)
            health = wrk(b.url + "/healthz", lua, args.seconds, args.threads, args.connections, None)
        finally:
            b.stop()
        chain, issued = audit_counts(b)
        ok = issue["non200"] == 0 and health["non200"] == 0 and issue["socket_errors"] == 0 \
            and health["socket_errors"] == 0 and issued >= issue["ok"] + 1
        return {"run": n, "issue": issue, "healthz": health, "audit": chain, "token_issue_records": issued,
                "batches": batches, "checks_passed": ok}


def table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| run | issuance tokens/s | p50 ms | p99 ms | healthz req/s | p50 ms | p99 ms | issuance/healthz |",
             "|---|---|---|---|---|---|---|---|"]
    for name, i, h in rows:
        lines.append(f"| {name} | {i['rate']:.0f} | {i['p50_us'] / 1000:.2f} | {i['p99_us'] / 1000:.2f} | "
                     f"{h['rate']:.0f} | {h['p50_us'] / 1000:.2f} | {h['p99_us'] / 1000:.2f} | "
                     f"{i['rate'] / h['rate']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the stagepass binary (release build)")
    p.add_argument("--database", help="passed to `stagepass serve --database` (default: SQLite in the data dir)")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--workdir", help="where the fresh data directories go (default: the system temp dir)")
    p.add_argument("--json", help="also write every run's figures to this file")
    args = p.parse_args()

    results = []
    for n in range(1, args.runs + 1):
        r = one_run(args, n)
        results.append(r)
        print(table([(str(n), r["issue"], r["healthz"])]))
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
    if len(results) > 1:
        med = {}
        for kind in ("issue", "healthz"):
            med[kind] = {k: statistics.median(r[kind][k] for r in results) for k in ("rate", "p50_us", "p99_us")}
        print(f"\nmedians of {len(results)} runs:")
        print(table([("median", med["issue"], med["healthz"])]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not all(r["checks_passed"] for r in results):
        raise SystemExit("a check failed: see above")


if __name__ == "__main__":
    main()
