#!/usr/bin/env python3
"""Load on an OpenAI-compatible server: CLIENTS concurrent streaming chat clients, each sending
requests back to back for DURATION seconds (standard library only). Reports requests, failures,
incomplete streams, time to first token (p50/p99), aggregate generated tokens/s, and the server's
RSS (MiB, sampled from /proc/PID every second) at the start and at each quarter of the run.

Usage: serve_load.py URL PID CLIENTS DURATION MAX_TOKENS  -> one JSON line on stdout
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

url, pid, clients, duration, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(url)
stop_at = time.monotonic() + duration
lock = threading.Lock()
ttft, tokens, done, failed, incomplete = [], [0], [0], [0], [0]
errors = []
QUESTIONS = ["What is 12 + 30?", "Name three prime numbers.", "Why is the sky blue?", "Write a haiku about rain."]


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def client(i):
    n = 0
    while time.monotonic() < stop_at:
        body = {"model": "m", "messages": [{"role": "user", "content": QUESTIONS[(i + n) % len(QUESTIONS)]}],
                "max_tokens": max_tokens, "temperature": 0.6, "seed": i * 1000 + n, "stream": True, "ignore_eos": True}
        n += 1
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
            c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
            first, count, finished = None, 0, False
            buf = b""
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if not event.startswith(b"data: "):
                        continue
                    data = event[6:]
                    if data == b"[DONE]":
                        finished = True
                        continue
                    j = json.loads(data)
                    for ch in j.get("choices", []):
                        d = ch.get("delta", {})
                        if d.get("content") or d.get("reasoning_content"):
                            count += 1
                            if first is None:
                                first = time.monotonic() - t0
            c.close()
            with lock:
                if not finished:
                    incomplete[0] += 1
                else:
                    done[0] += 1
                    tokens[0] += count
                    if first is not None:
                        ttft.append(first)
        except Exception as e:  # noqa: BLE001 (every failure is counted and reported)
            with lock:
                failed[0] += 1
                errors.append(str(e)[:200])


rss = []
def sampler():
    while time.monotonic() < stop_at:
        rss.append(rss_mib())
        time.sleep(1)


start = time.monotonic()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=sampler)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
q = sorted(ttft)
pct = lambda p: q[min(len(q) - 1, int(p * len(q)))] if q else None
print(json.dumps({"requests": done[0], "failed": failed[0], "incomplete": incomplete[0], "errors": errors[:3],
                  "ttft_p50_s": pct(0.5), "ttft_p99_s": pct(0.99), "tokens_per_s": tokens[0] / elapsed,
                  "tokens": tokens[0], "seconds": elapsed,
                  "rss_mib_quarters": [round(rss[min(len(rss) - 1, len(rss) * k // 4)], 1) for k in range(4)] + [round(rss[-1], 1)]
                  if rss else None}))
