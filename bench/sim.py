"""How fast the simulator generates messages and serves a full list walk.

Two ratios against baselines measured in the same run, on the same machine:

1. generation: building N messages vs serializing those same N messages once with ``json.dumps``
   (the least any consumer of them pays);
2. list walk: following ``nextPage`` over N messages at ``count=500`` vs the same number of
   requests answered ``403`` by the same server (HTTP and Flask cost, no page work).

Bounded: N defaults to 100,000 (``--messages``); the whole run takes well under 60 s.
Run: ``.venv/bin/python bench/sim.py [--messages N]``.
"""

import argparse
import json
import time

import requests

from simulator import Mailbox
from simulator import Simulator

LIST = "/medical/v1/message"


def generation(count):
    started = time.perf_counter()
    mailbox = Mailbox(seed=1, messages=count)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    for message_id in mailbox.ids():
        json.dumps(mailbox.get(message_id), ensure_ascii=False, separators=(",", ":"))
    serialized = time.perf_counter() - started
    return generated, serialized


def walk(count):
    with Simulator(seed=1, messages=count) as sim, requests.Session() as session:
        headers = {"x-api-key": sim.api_key}
        started = time.perf_counter()
        url, pages, seen = f"{sim.url}{LIST}?count=500", 0, 0
        while url:
            page = session.get(url, headers=headers, timeout=30).json()
            pages += 1
            seen += page["meta"]["itemsOnPage"]
            url = page["meta"].get("nextPage")
        walked = time.perf_counter() - started
        assert seen == count, (seen, count)
        started = time.perf_counter()
        for _ in range(pages):
            assert session.get(f"{sim.url}{LIST}", timeout=30).status_code == 403
        forbidden = time.perf_counter() - started
    return pages, walked, forbidden


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    for count in (10_000, args.messages):
        generated, serialized = generation(count)
        print(
            f"generate {count:>7} messages: {generated:6.2f} s "
            f"({count / generated:,.0f}/s); json.dumps baseline {serialized:5.2f} s; "
            f"ratio {generated / serialized:4.1f}x"
        )
    pages, walked, forbidden = walk(args.messages)
    print(
        f"walk {args.messages} messages at count=500: {pages} pages in {walked:5.2f} s "
        f"({args.messages / walked:,.0f} messages/s); {pages} 403s baseline {forbidden:5.2f} s; "
        f"ratio {walked / forbidden:4.1f}x"
    )


if __name__ == "__main__":
    main()
