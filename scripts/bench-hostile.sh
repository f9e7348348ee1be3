#!/usr/bin/env bash
# /healthz latency while each hostile case of tests/http/test_hostile runs,
# against idle, on one vaed on 127.0.0.1:
#   scripts/bench-hostile.sh [BUILD_DIR]        (default build; CASES="idle big-upload" for some)
# The daemon runs as `make run` starts it (no token, loopback, default
# bounds) with --workers 0 (jobs stay queued, so event streams stay open)
# and a small MLP trained here on MNIST for one epoch. Each attack comes from
# 127.0.0.2 (another loopback address, as another client would) and runs for
# DURATION seconds (default 5) while 127.0.0.1 asks GET /healthz one request
# after another, alternating with GET /models (a read of the registry);
# the table gives the /healthz p50, p99 and max, the /models p99 and max
# (sampled one after another, so one long stall shows in the max), how many
# of those failed, what the attack was answered, and the daemon's peak RSS
# growth (VmHWM, reset through /proc/PID/clear_refs before each case).
# Attacks:
#   png-text-bomb    POST /encode: 1000 zTXt chunks of 8 MiB of zeros (7.8 MB), 4 clients
#   png-size-bomb    POST /encode: a 16 KB PNG declaring 4096x4096, 4 clients
#   held-bodies      250 connections, each 16 MiB declared and all but 1 byte sent
#   conn-flood       300 idle connections
#   stream-flood     256 GET /jobs/1/events
#   rebinding        Host: attacker.example and foreign-Origin requests, 4 clients
#   fifo-data        POST /jobs naming a FIFO under the data root, 4 clients
#   long-header      a safetensors upload with a 64 MiB header of one shape, 2 clients
#   stalled-download 20 downloads of a 26 MB checkpoint, never read
#   big-upload       100 MB checkpoints (new bytes each time) uploaded one after another
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${1:-build}
vaed=$build/vaed
duration=${DURATION:-5}
cases=${CASES:-}   # e.g. CASES="idle big-upload": only those (default all)
[ -x "$vaed" ] || { echo "bench-hostile: $vaed not found (make all)" >&2; exit 1; }
[ -f data/mnist/t10k-images-idx3-ubyte ] || bash scripts/get-data.sh mnist

tmp=$(mktemp -d /tmp/vaed-bench-hostile-XXXXXX)
vaed_pid=
cleanup() {
    if [ -n "$vaed_pid" ]; then kill "$vaed_pid" 2>/dev/null || true; wait "$vaed_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "bench-hostile: training a small model..." >&2
"$vaed" train --data mnist --epochs 1 --hidden 64 --latent 8 --iwae 0 --out "$tmp/small.safetensors" >/dev/null
"$vaed" train --data mnist --epochs 1 --limit 256 --hidden 4096 --latent 8 --iwae 0 \
    --out "$tmp/wide.safetensors" >/dev/null
"$vaed" train --data mnist --epochs 1 --limit 64 --hidden 16384 --latent 8 --iwae 0 \
    --out "$tmp/huge.safetensors" >/dev/null
mkdir -p "$tmp/sets" "$tmp/var"
mkfifo "$tmp/sets/pipe-images-idx3-ubyte"
ln -s "$root/data/mnist" "$tmp/sets/mnist"
VAED_DATA="$tmp/sets" "$vaed" serve --listen 127.0.0.1:0 --data-dir "$tmp/var" \
    --port-file "$tmp/port" --workers 0 >"$tmp/serve.log" 2>&1 &
vaed_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { cat "$tmp/serve.log" >&2; exit 1; }
port=$(cat "$tmp/port")
url=http://127.0.0.1:$port
"$vaed" push --url "$url" --model digits "$tmp/small.safetensors" >/dev/null
"$vaed" push --url "$url" --model wide "$tmp/wide.safetensors" >/dev/null
curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"model": "m", "data": "mnist", "epochs": 1}' "$url/jobs" >/dev/null

/usr/bin/python3 - "$port" "$vaed_pid" "$duration" "$tmp/huge.safetensors" "$cases" <<'EOF'
import socket, struct, sys, threading, time, zlib

port, pid, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
huge = bytearray(open(sys.argv[4], "rb").read())
only = sys.argv[5].split()

def conn(src="127.0.0.2"):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s

def request(raw, src="127.0.0.2", timeout=30):
    """One request on its own connection: the status line's code, or 0."""
    s = conn(src)
    s.settimeout(timeout)
    try:
        s.sendall(raw)  # no shutdown(SHUT_WR): libmicrohttpd takes a half-close for an abort
        head = s.recv(64)
        while s.recv(1 << 16):
            pass
        return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else 0
    except OSError:
        return 0
    finally:
        s.close()

def post(path, ctype, body, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (path, ctype, extra, len(body))) + body

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def png(w, h, texts=0, text_bytes=0):
    raw = b"\0" * (h * (w + 1))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    if texts:
        z = chunk(b"zTXt", b"bomb\0\0" + zlib.compress(b"\0" * text_bytes, 9))
        out += z * texts
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")

def rss_reset():
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    return status("VmRSS")

def status(field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

def healthz(seconds):
    times, failed, end = {b"/healthz": [], b"/models": []}, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for path, t in times.items():
            t0 = time.monotonic()
            code = request(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                           % path, src="127.0.0.1", timeout=10)
            t.append(time.monotonic() - t0)
            failed += code != 200
    for t in times.values():
        t.sort()
    pick = lambda t, q: t[min(len(t) - 1, int(q * len(t)))] * 1e3
    h, m = times[b"/healthz"], times[b"/models"]
    return (pick(h, 0.5), pick(h, 0.99), h[-1] * 1e3, pick(m, 0.99), m[-1] * 1e3, failed,
            len(h) + len(m))

uploads = [0]
def huge_upload():
    """The 100 MB checkpoint with one weight changed: new bytes to store."""
    uploads[0] += 1
    huge[-4 * uploads[0] - 4] ^= 1  # the low byte of a float near the end
    return post(b"/models/huge/checkpoints", b"application/octet-stream", bytes(huge))

def loop(make, clients):
    """clients threads sending make() until stopped; counts answers by status."""
    stop, counts, lock = threading.Event(), {}, threading.Lock()
    def run():
        while not stop.is_set():
            code = request(make())
            with lock:
                counts[code] = counts.get(code, 0) + 1
    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    def finish():
        stop.set()
        for t in threads:
            t.join(60)
        return " ".join("%s×%d" % (k, v) for k, v in sorted(counts.items()))
    return finish

def hold(heads, body_of=lambda s: None):
    """Connections that send heads and stay; the first bytes of each answer."""
    socks, answers = [], {}
    for h in heads:
        try:
            s = conn()
            s.sendall(h)
            socks.append(s)
        except OSError:
            answers["refused"] = answers.get("refused", 0) + 1
    time.sleep(0.3)
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(64)
            key = data.split()[1].decode() if data.startswith(b"HTTP/1.1") else "closed"
        except BlockingIOError:
            key = "open"
            body_of(s)
        except OSError:
            key = "closed"
        answers[key] = answers.get(key, 0) + 1
    def finish():
        for s in socks:
            s.close()
        return " ".join("%s×%d" % (k, v) for k, v in sorted(answers.items()))
    return finish

def send_all_but_last(s):
    s.setblocking(True)
    try:
        s.sendall(b" " * ((16 << 20) - 1))
    except OSError:
        pass

text_bomb = post(b"/encode", b"image/png", png(28, 28, 1000, 8 << 20))
size_bomb = post(b"/encode", b"image/png", png(4096, 4096))
header = b'{"w":{"dtype":"F32","shape":[' + b"1," * ((32 << 20) - 1) + b'1],"data_offsets":[0,4]}}'
long_header = post(b"/models/x/checkpoints", b"application/octet-stream",
                   struct.pack("<Q", len(header)) + header + b"\0" * 4)
job = b'{"model": "m", "data": "pipe-images-idx3-ubyte", "epochs": 1}'
cases = [
    ("png-text-bomb", lambda: loop(lambda: text_bomb, 4)),
    ("png-size-bomb", lambda: loop(lambda: size_bomb, 4)),
    ("held-bodies", lambda: hold([b"POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                  b"application/json\r\nContent-Length: %d\r\n\r\n" % (16 << 20)] * 250,
                                 send_all_but_last)),
    ("conn-flood", lambda: hold([b""] * 300)),
    ("stream-flood", lambda: hold([b"GET /jobs/1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"] * 256)),
    ("rebinding", lambda: loop(lambda: b"DELETE /models/digits/versions/1 HTTP/1.1\r\n"
                               b"Host: attacker.example\r\nConnection: close\r\n\r\n", 4)),
    ("fifo-data", lambda: loop(lambda: post(b"/jobs", b"application/json", job), 4)),
    ("long-header", lambda: loop(lambda: long_header, 2)),
    ("stalled-download", lambda: hold([b"GET /models/wide/versions/1/file HTTP/1.1\r\n"
                                       b"Host: 127.0.0.1\r\n\r\n"] * 20)),
    ("big-upload", lambda: loop(huge_upload, 1)),
]
print("| case | /healthz p50 ms | p99 ms | max ms | /models p99 ms | max ms | failed "
      "| attack answered | peak RSS growth |")
print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
row = "| %s | %.2f | %.2f | %.1f | %.2f | %.1f | %d of %d | %s | %d MB |"
for name, start in [("idle", None)] + cases:
    if only and name not in only:
        continue
    base = rss_reset()
    finish = start() if start else (lambda: "")
    p50, p99, mx, m99, mmx, failed, n = healthz(duration)
    answered = finish()
    print(row % (name, p50, p99, mx, m99, mmx, failed, n, answered,
                 (status("VmHWM") - base) // 1024))
    time.sleep(1)
EOF
