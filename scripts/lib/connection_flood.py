"""Load generator of scripts/bench-connection-flood.sh.

Holds CONNECTIONS half-open connections to `serve` for SECONDS: each sends a piece of a request
(nothing, half a request line, half the headers, or whole headers and a body that never
completes) and then stays silent. When the server closes one, another is opened at once, so
the flood stays at CONNECTIONS. Meanwhile, once a second, it times GET /healthz and a signed
slash command on fresh connections and samples the RSS of the server's process.

    python3 connection_flood.py HOST PORT SERVER_PID SIGNING_SECRET CONNECTIONS SECONDS

FLOOD_KINDS (default 0123) selects the pieces sent, by their index in PIECES.
"""

import hashlib
import hmac
import os
import http.client
import resource
import selectors
import socket
import sys
import threading
import time
import urllib.parse

HOST, PORT, PID, SECRET = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
CONNECTIONS, SECONDS = int(sys.argv[5]), float(sys.argv[6])

PIECES = [
    b"",
    b"POST /slack/comm",
    b"POST /slack/commands HTTP/1.1\r\nhost: bot\r\ncontent-type: application/x-www-fo",
    b"POST /slack/commands HTTP/1.1\r\nhost: bot\r\ncontent-length: 1000\r\n\r\nteam_id=T0",
]

# FLOOD_KINDS=0 (say) floods with those pieces only, to measure what each kind costs.
PIECES = [PIECES[int(k)] for k in os.environ.get("FLOOD_KINDS", "0123")]

# The flood's sockets and the server's: each side needs CONNECTIONS descriptors and some.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < CONNECTIONS + 100:
    sys.exit(f"the file-descriptor limit ({hard}) is below {CONNECTIONS + 100}: raise it (ulimit -Hn)")


def rss_mb():
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(request):
    """Milliseconds for one request on a fresh connection, and its status (or the error)."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        request(conn)
        response = conn.getresponse()
        response.read()
        conn.close()
        outcome = response.status
    except OSError as err:
        outcome = type(err).__name__
    return (time.monotonic() - started) * 1000, outcome


def healthz(conn):
    conn.request("GET", "/healthz")


def signed_check(conn):
    body = urllib.parse.urlencode({
        "team_id": "T0BENCH", "channel_id": "C0BENCH", "user_id": "U0BENCH",
        "command": "/crm-username", "text": "check dana.deleted@acme.com",
        "response_url": "https://hooks.slack.com/commands/bench", "trigger_id": "1.2.3",
    })
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    conn.request("POST", "/slack/commands", body=body, headers={
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts, "x-slack-signature": signature,
    })


def open_on_server():
    """The server's own count of open connections (its /metrics), or None."""
    try:
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("crm_username_http_connections_open "):
            return int(float(line.split()[1]))
    return None


samples = {"healthz": [], "check": [], "rss": [], "open": []}
stop = threading.Event()


def probe():
    while not stop.wait(1.0):
        samples["rss"].append(rss_mb())
        samples["open"].append(open_on_server())
        samples["healthz"].append(timed(healthz))
        samples["check"].append(timed(signed_check))


selector = selectors.DefaultSelector()
opened = closed = failed = 0


def open_one(n):
    global opened, failed
    try:
        sock = socket.create_connection((HOST, PORT), timeout=5)
        sock.sendall(PIECES[n % len(PIECES)])
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened += 1
    except OSError:
        failed += 1


print(f"idle RSS {rss_mb():.1f} MB; opening {CONNECTIONS} half-open connections")
started = time.monotonic()
for n in range(CONNECTIONS):
    open_one(n)
print(f"{opened} opened in {time.monotonic() - started:.1f} s ({failed} failed to open); "
      f"RSS {rss_mb():.1f} MB, {open_on_server()} open on the server")
prober = threading.Thread(target=probe)
prober.start()
deadline = time.monotonic() + SECONDS
while time.monotonic() < deadline:
    for key, _ in selector.select(timeout=0.2):
        sock = key.fileobj
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            selector.unregister(sock)
            sock.close()
            closed += 1
            open_one(closed)
stop.set()
prober.join()
open_now = len(selector.get_map())
print(f"after {SECONDS:.0f} s: {closed} closed by the server and reopened, {open_now} open, "
      f"{failed} failed to open")


def summary(name, values):
    ms = sorted(v[0] for v in values)
    outcomes = {}
    for _, outcome in values:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{name}: {len(ms)} requests, outcomes {outcomes}; ms min {ms[0]:.1f}, "
          f"median {ms[len(ms) // 2]:.1f}, max {ms[-1]:.1f}")


summary("GET /healthz", samples["healthz"])
summary("signed /crm-username check", samples["check"])
rss = samples["rss"]
print(f"serve RSS during the flood: min {min(rss):.1f} MB, max {max(rss):.1f} MB")
counts = [n for n in samples["open"] if n is not None]
if counts:
    print(f"connections open on the server (its gauge, once a second): min {min(counts)}, "
          f"max {max(counts)}; {len(samples['open']) - len(counts)} samples refused")
for key in list(selector.get_map().values()):
    key.fileobj.close()
time.sleep(1)
print(f"RSS 1 s after the flood ended: {rss_mb():.1f} MB")
