#!/usr/bin/env python3
"""Dashboard update latency (issue 14): commit -> server-sent event received.

Start relais with an HTTP ingest source `lab` on 127.0.0.1:19781 (allow_anonymous,
format = "json", max_body = "8MiB") and `[admin] listen = "127.0.0.1:19780"`,
`auth = "none"`, then:

    python3 scripts/dash-latency.py N ROUNDS PID

Each round posts one JSON object with N tags (t0..tN-1, all the same new value)
and measures from the ingest's 200 (sent after the commit) until every one of
the N tags arrived on /api/live; prints p50 and max, and the daemon's RSS
(VmRSS of PID) with the stream open.
"""
import http.client, json, threading, time, sys, statistics, urllib.request

N = int(sys.argv[1]); ROUNDS = int(sys.argv[2]); PID = sys.argv[3]
got = {}


def reader():
    c = http.client.HTTPConnection("127.0.0.1", 19780)
    c.request("GET", "/api/live")
    r = c.getresponse()
    name = None
    seen = {}
    for line in r:
        line = line.decode().rstrip("\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:") and name == "samples":
            now = time.monotonic()
            for s in json.loads(line[5:]):
                v = s["value"]
                seen[v] = seen.get(v, 0) + 1
                if seen[v] == N:
                    got[v] = now


threading.Thread(target=reader, daemon=True).start()
time.sleep(1)
lat = []
for k in range(ROUNDS):
    v = 1000 + k
    body = json.dumps({f"t{i}": v for i in range(N)}).encode()
    req = urllib.request.Request("http://127.0.0.1:19781/ingest/lab", data=body, method="POST")
    urllib.request.urlopen(req).read()
    t_commit = time.monotonic()
    while v not in got and time.monotonic() - t_commit < 10:
        time.sleep(0.001)
    if v in got:
        lat.append((got[v] - t_commit) * 1000)
    time.sleep(0.6)
rss = [l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]
lat.sort()
print(f"N={N} rounds={len(lat)}: p50 {statistics.median(lat):.1f} ms, max {lat[-1]:.1f} ms; RSS {int(rss) / 1024:.1f} MB")
