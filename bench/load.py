#!/usr/bin/env python3
"""Load benchmark: N concurrent uploaders of mixed file sizes against a
running `bdia serve`, for a fixed time, behaving like `bdia upload` (a 429,
503 or 507 is retried after its Retry-After; a retried upload keeps its
idempotency key). Standard library only.

  python3 bench/load.py --base URL --tenants FILE --pid PID --files DIR \
      [--uploaders 64] [--seconds 180] [--solo-seconds 20]

FILE is a JSON list of {"client_id", "token"}: uploader i uses tenant
i % len. DIR holds small.csv.gz, medium.csv.gz and large.csv.gz; each
upload picks one (6:3:1). First, one uploader alone for --solo-seconds (the
baseline in the same run); then all of them. Prints one JSON object:
latency p50/p99 per size alone and under load, their ratios, uploads,
refusals (429/503/507, retried), errors (anything else), and the server's
RSS sampled every second (first, max, last, and the slope of the last
half, in MiB per minute).
"""
import argparse
import http.client
import json
import os
import random
import statistics
import threading
import time
import urllib.parse
import uuid

SIZES = ["small"] * 6 + ["medium"] * 3 + ["large"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def multipart(data):
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"f.csv.gz\"\r\nContent-Type: application/gzip\r\n\r\n"
    ).encode()
    return boundary, head + data + f"\r\n--{boundary}--\r\n".encode()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {s: [] for s in set(SIZES)}
        self.uploads = 0
        self.refusals = {}
        self.errors = {}

    def add(self, size, secs):
        with self.lock:
            self.latency[size].append(secs)
            self.uploads += 1

    def count(self, table, key):
        with self.lock:
            table[key] = table.get(key, 0) + 1


def uploader(i, args, tenants, files, stop, stats, rng):
    url = urllib.parse.urlparse(args.base)
    t = tenants[i % len(tenants)]
    while not stop.is_set():
        size = rng.choice(SIZES)
        boundary, body = multipart(files[size])
        key = uuid.uuid4().hex
        started = time.monotonic()
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
                c.request(
                    "POST",
                    "/aa/collect/v1/events",
                    body=body,
                    headers={
                        "Authorization": f"Bearer {t['token']}",
                        "x-api-key": t["client_id"],
                        "x-adobe-vgid": f"u{i}",
                        "x-adobe-idempotency-key": key,
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                    },
                )
                r = c.getresponse()
                r.read()
                c.close()
            except OSError as e:
                stats.count(stats.errors, type(e).__name__)
                time.sleep(1)
                continue
            if r.status == 200:
                stats.add(size, time.monotonic() - started)
                break
            if r.status in (429, 503, 507):
                stats.count(stats.refusals, r.status)
                time.sleep(float(r.getheader("Retry-After", "1")) * (0.5 + rng.random()))
                continue
            stats.count(stats.errors, r.status)
            break


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 3)


def run(n, seconds, args, tenants, files):
    stats = Stats()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=uploader,
            args=(i, args, tenants, files, stop, stats, random.Random(i)),
            daemon=True,
        )
        for i in range(n)
    ]
    samples = []
    t0 = time.monotonic()
    for th in threads:
        th.start()
    while time.monotonic() - t0 < seconds:
        samples.append((time.monotonic() - t0, rss_kib(args.pid)))
        time.sleep(1)
    stop.set()
    for th in threads:
        th.join(timeout=600)
    return stats, samples


def slope_mib_per_min(samples):
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return 0.0
    xs = [s[0] for s in half]
    ys = [s[1] / 1024 for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var, 2) if var else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--tenants", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--files", required=True)
    ap.add_argument("--uploaders", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=180)
    ap.add_argument("--solo-seconds", type=int, default=20)
    args = ap.parse_args()
    tenants = json.load(open(args.tenants))
    files = {s: open(os.path.join(args.files, f"{s}.csv.gz"), "rb").read() for s in set(SIZES)}
    solo, _ = run(1, args.solo_seconds, args, tenants, files)
    load, samples = run(args.uploaders, args.seconds, args, tenants, files)
    out = {"uploaders": args.uploaders, "seconds": args.seconds, "sizes": {}}
    for s in sorted(set(SIZES)):
        a, b = solo.latency[s], load.latency[s]
        row = {
            "bytes": len(files[s]),
            "alone_p50_s": pct(a, 50),
            "load_p50_s": pct(b, 50),
            "load_p99_s": pct(b, 99),
            "uploads": len(b),
        }
        if row["alone_p50_s"] and row["load_p50_s"]:
            row["p50_ratio"] = round(row["load_p50_s"] / row["alone_p50_s"], 2)
        out["sizes"][s] = row
    out["uploads"] = load.uploads
    out["uploads_per_s"] = round(load.uploads / args.seconds, 2)
    out["refusals_retried"] = load.refusals
    out["errors"] = load.errors
    rss = [r for _, r in samples]
    out["rss_mib"] = {
        "first": round(rss[0] / 1024, 1),
        "max": round(max(rss) / 1024, 1),
        "last": round(rss[-1] / 1024, 1),
        "slope_last_half_mib_per_min": slope_mib_per_min(samples),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
