"""A small asyncio HTTP/1.1 load generator (keep-alive, no dependencies), run in its own process.

    python -m bench.loadgen '{"url": ..., "method": "PUT", "requests": [[path, headers, body], ...],
                              "connections": 8, "duration_s": 5}'

prints one JSON line: {"requests", "errors", "seconds", "rps", "status_counts", "cpu_seconds", "ran_out"}.
Each connection cycles through `requests` (rotated by connection index) until `duration_s`; with
`"once": true` the connections share `requests` and send each exactly once (warm-up passes); with
`"distinct": true` they share them until `duration_s`, never sending one twice (requests that cannot
be repeated, like readings batches), and `ran_out` says whether a connection had none left. CPU
seconds of this process are reported so the harness can show that the generator was not the
bottleneck.
"""

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


async def _read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(host, port, method, requests, offset, deadline, counts, once=False):
    """Send requests until the deadline (None: no deadline) or, with `once`, the end of `requests`;
    returns whether `requests` ran out first."""
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while (not once or index < len(requests)) and (deadline is None or time.perf_counter() < deadline):
            path, headers, body = requests[index % len(requests)]
            index += 1
            payload = body.encode() if isinstance(body, str) else (body or b"")
            head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(payload)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await writer.drain()
            counts[await _read_response(reader)] += 1
    finally:
        writer.close()
    return once and index >= len(requests)


async def run(spec):
    parts = urlsplit(spec["url"])
    counts = Counter()
    deadline = time.perf_counter() + spec.get("duration_s", 5)
    start = time.perf_counter()
    connections, method = spec.get("connections", 8), spec.get("method", "GET")
    if spec.get("once") or spec.get("distinct"):
        until = deadline if spec.get("distinct") else None
        tasks = [_connection(parts.hostname, parts.port or 80, method, spec["requests"][i::connections], 0, until,
                             counts, once=True) for i in range(connections)]
    else:
        tasks = [_connection(parts.hostname, parts.port or 80, method, spec["requests"], i * 7919, deadline, counts)
                 for i in range(connections)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    seconds = time.perf_counter() - start
    total = sum(counts.values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": total,
        "errors": sum(v for k, v in counts.items() if k >= 400),
        "server_errors": sum(v for k, v in counts.items() if k >= 500),
        "exceptions": [repr(r) for r in results if isinstance(r, Exception)],
        "seconds": round(seconds, 3),
        "rps": round(total / seconds, 1) if seconds else 0.0,
        "status_counts": {str(k): v for k, v in counts.items()},
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "ran_out": any(r is True for r in results),
    }


def main():
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
