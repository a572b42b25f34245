"""Hostile cache flood: one student opens link after link with new broadcast shapes; the server's RSS is printed.

Every distinct pair of shapes is a new entry of the class-wide result cache. Before the cache was
bounded in bytes (and the broadcast result kept arrays too big to draw), this flood took a server
from 634 MB to 2.0 GB in six minutes. Run from the repository root:

    python -m bench.flood --links 400            # starts its own `streamlit run app.py`
    python -m bench.flood --url http://127.0.0.1:8501 --server-pid PID

It prints RSS over time and, as the last line, one JSON object. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench.load import ProcSample, sample_tree, streamlit_server
from bench.stclient import ClientError, CookieJar, StreamlitClient


def shape_pairs() -> Iterator[tuple[str, str]]:
    """Yield broadcastable pairs of six-dimensional shapes of 7s and 8s (a) against trailing shapes (b)."""
    for a in itertools.product((7, 8), repeat=6):
        for b_len in range(1, 7):
            b = a[6 - b_len :]
            for ones in itertools.product((False, True), repeat=b_len):
                yield "x".join(map(str, a)), "x".join("1" if one else str(d) for d, one in zip(b, ones, strict=True))


async def flood(url: str, links: int, pids: Sequence[int], every: int) -> dict[str, Any]:
    """Open `links` distinct broadcast links one after another; return RSS samples and error counts."""
    t0 = time.monotonic()
    samples: list[ProcSample] = [sample_tree(pids, 0.0)]
    errors = 0
    for i, (a, b) in enumerate(itertools.islice(shape_pairs(), links)):
        client = StreamlitClient(url, f"/tensors?tab=broadcast&broadcast.shape_a={a}&broadcast.shape_b={b}", jar=CookieJar())
        try:
            run = await client.open()
            errors += len(run.exceptions)
        except ClientError:
            errors += 1
        finally:
            await client.close()
        if (i + 1) % every == 0:
            samples.append(sample_tree(pids, time.monotonic() - t0))
            print(f"{i + 1:5d} links  {time.monotonic() - t0:6.0f} s  RSS {samples[-1].rss_bytes / 2**20:7.0f} MiB", flush=True)
    samples.append(sample_tree(pids, time.monotonic() - t0))
    rss = [s.rss_bytes / 2**20 for s in samples]
    return {
        "links": links,
        "errors": errors,
        "seconds": round(time.monotonic() - t0, 1),
        "rss_mib": {"start": round(rss[0]), "end": round(rss[-1]), "max": round(max(rss))},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the flood against --url, or against a server of its own; print RSS over time and a JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server; default: start `streamlit run app.py` here")
    parser.add_argument("--server-pid", type=int, action="append", default=[], help="server process to sample (with --url)")
    parser.add_argument("--links", type=int, default=400)
    parser.add_argument("--every", type=int, default=25, help="sample RSS every this many links")
    args = parser.parse_args(argv)
    if args.url:
        report = asyncio.run(flood(args.url, args.links, args.server_pid, args.every))
    else:
        with streamlit_server() as server:
            report = asyncio.run(flood(server.url, args.links, [server.pid], args.every))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
