"""What compressing stored resources saves and costs, against storing the JSON as it is.

    .venv/bin/python bench/compression.py [--messages 4000]

For ``bench/store.py``'s ~1 KB Communications, with three kinds of text (its own, drawn from 24
clinical words; words at their frequency in some of Python's docstrings; words drawn evenly from
every distinct word there), prints the stored size of each resource and the CPU per message of:
the JSON as it is (the baseline: what the store kept before, ``0x00 ‖ JSON``), zlib and Zstandard
each alone and against the dictionary of ``inbox/compression.py``, and ``Vault().seal`` (what the
store runs now: Zstandard level 1 with the dictionary). Best of 3 passes, this process's CPU.
"""

import argparse
import collections
import email
import http.client
import logging
import random
import re
import statistics
import time
import zlib

import zstandard

from inbox import compression
from inbox.crypto import Vault
from inbox.normalize import normalize
from store import communications


def texts(messages, seed=1):
    """The three kinds of text, each as a list of resource bodies (compact JSON bytes)."""
    prose = " ".join((module.__doc__ or "") for module in
                     (email, http.client, logging, argparse, collections, zlib, re))
    words = re.findall(r"[A-Za-z]{2,}", prose)
    vocabulary = sorted({word.lower() for word in words})
    rng = random.Random(seed)
    kinds = {"24 clinical words (bench/store.py)": communications(messages)}
    for name, pick in ((f"docstring words at their frequency ({len(words):,})", words),
                       (f"{len(vocabulary):,} distinct words, evenly", vocabulary)):
        resources = communications(messages)
        for resource in resources:
            resource["payload"][0]["contentString"] = " ".join(
                rng.choice(pick) for _ in range(rng.randint(40, 60)))
        kinds[name] = resources
    return {name: [normalize(r, direction="inbound").body for r in resources]
            for name, resources in kinds.items()}


def zlib_with(dictionary, level=6):
    def compress(body):
        deflater = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY,
                                    *([dictionary] if dictionary else []))
        return deflater.compress(body) + deflater.flush()
    return compress


def zstd_with(dictionary, level):
    data = (zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            if dictionary else None)
    compressor = zstandard.ZstdCompressor(level=level, dict_data=data, write_checksum=False,
                                          write_content_size=True, write_dict_id=False)
    return compressor.compress


def measure(codec, bodies):
    """(mean stored bytes, best CPU µs per body over 3 passes)."""
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        stored = [codec(body) for body in bodies]
        best = min(best, (time.process_time() - began) / len(bodies) * 1e6)
    return statistics.mean(map(len, stored)), best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    args = parser.parse_args()
    vault = Vault()
    codecs = {
        "JSON as it is (baseline)": lambda body: b"\0" + body,
        "zlib level 6, alone": zlib_with(None),
        "zlib level 6, dictionary": zlib_with(compression.DICTIONARY),
        "zstd level 1, alone": zstd_with(None, 1),
        "zstd level 1, dictionary": zstd_with(compression.DICTIONARY, 1),
        "zstd level 3, dictionary": zstd_with(compression.DICTIONARY, 3),
        "Vault().seal (the store, no keys)": lambda body: vault.seal("m", body),
    }
    print(f"{args.messages:,} messages per kind of text; stored bytes (mean) and CPU per message, best of 3")
    for kind, bodies in texts(args.messages).items():
        json_bytes = statistics.mean(map(len, bodies))
        print(f"\ntext: {kind}; resource JSON mean {json_bytes:,.0f} B")
        print(f"  {'codec':36} {'stored B':>9} {'of JSON':>8} {'us/msg':>7}")
        for name, codec in codecs.items():
            size, micros = measure(codec, bodies)
            print(f"  {name:36} {size:9,.0f} {size / json_bytes:8.2f} {micros:7.1f}")


if __name__ == "__main__":
    main()
