"""Load held by ``diffagent serve``: p50 / p99 latency, errors and server memory at 1, 8 and 32 clients.

Starts the service itself on a free loopback port (over the catalogue in ``DIFFAGENT_HOME``, rate limit off),
sends a bounded number of requests at each concurrency to ``POST /select`` and ``POST /select/batch``, stops
each level after ``--max-seconds`` whatever is left, prints a markdown table and stops the server.
Nothing leaves the machine: the server binds 127.0.0.1 and the clients call only it.

    DIFFAGENT_HOME=... python scripts/load_service.py --requests 200 --batch-size 16 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

DIFFUSIONDB = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "diffusiondb-prompts" / "prompts-10k.json"
)
FALLBACK_PROMPTS = [
    "a cozy cabin in a snowy forest at dusk, warm light in the windows, highly detailed",
    "portrait photo of an old fisherman, dramatic lighting, 85mm",
    "anime girl with blue hair, cherry blossoms, soft light",
    "a futuristic city at night, neon, rain, cinematic",
    "a watercolor painting of a fox in a meadow",
    "a castle on a cliff at sunset, fantasy landscape, dramatic clouds",
]


def prompts(limit: int) -> list[str]:
    """Real user prompts (DiffusionDB) when the shared data is there, else a few written ones."""
    if DIFFUSIONDB.is_file():
        data = json.loads(DIFFUSIONDB.read_text(encoding="utf-8"))
        rows = data if isinstance(data, list) else list(data.values())
        raw = [r.get("text") or r.get("prompt") if isinstance(r, dict) else r for r in rows]
        texts = [t[:1000] for t in raw if isinstance(t, str) and t.strip()]
        if texts:
            return texts[:limit]
    return FALLBACK_PROMPTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (the workers), from /proc."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def start_server(port: int, workers: int, agent: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DIFFAGENT_RATE_LIMIT": "0"}
    env.pop("DIFFAGENT_API_KEY", None)
    command = [sys.executable, "-c", "from diffagent.cli import main; main()", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--agent", agent]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read() if server.stderr else ''}")
        try:
            # each worker loads its agent in the background: wait until 20 new connections in a row
            # (spread over the workers) find it ready
            ready = 0
            while ready < 20 and time.monotonic() < deadline:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                ready = ready + 1 if health["ready"] else 0
                time.sleep(0.05 if health["ready"] else 0.5)
            httpx.post(f"http://127.0.0.1:{port}/select", json={"prompt": "warm up"}, timeout=600)
            return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 15 minutes")


def run_level(
    url: str, path: str, bodies: list[dict], clients: int, total: int, max_seconds: float
) -> dict[str, Any]:
    """``total`` requests from ``clients`` threads (a keep-alive connection each), until the deadline."""
    latencies: list[float] = []
    errors = [0]
    issued = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= total:
                        return
                    body = bodies[issued[0] % len(bodies)]
                    issued[0] += 1
                began = time.perf_counter()
                try:
                    ok = http.post(path, json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(elapsed)
                    errors[0] += not ok

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors[0],
        "p50_ms": statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan"),
        "per_s": len(ordered) / wall if wall else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=200, help="requests per level for /select")
    parser.add_argument("--batch-requests", type=int, default=40, help="requests per level for /select/batch")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per /select/batch request")
    parser.add_argument("--max-seconds", type=float, default=120, help="a level stops after this long")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--agent", default="default")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    texts = prompts(2000)
    single = [{"prompt": text} for text in texts]
    size = args.batch_size
    batches = [
        {"items": [{"id": j, "prompt": texts[(i * size + j) % len(texts)]} for j in range(size)]}
        for i in range(max(1, len(texts) // size))
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(
        f"starting diffagent serve --workers {args.workers} --agent {args.agent} on {url} ...",
        file=sys.stderr,
    )
    server = start_server(port, args.workers, args.agent)
    rows = []
    try:
        plan = (("/select", single, args.requests), ("/select/batch", batches, args.batch_requests))
        for path, bodies, total in plan:
            for clients in levels:
                before = tree_rss_mb(server.pid)
                row = run_level(url, path, bodies, clients, total, args.max_seconds)
                after = tree_rss_mb(server.pid)
                row.update(endpoint=path, clients=clients, rss_mb=after, rss_growth_mb=after - before)
                rows.append(row)
                print(f"{path} x{clients}: {row}", file=sys.stderr)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(
        "\n| endpoint | clients | requests | errors | p50 ms | p99 ms | requests/s | server RSS MB (growth) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| `{r['endpoint']}` | {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['per_s']:.1f} | {r['rss_mb']:.0f} ({r['rss_growth_mb']:+.0f}) |"
        )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
