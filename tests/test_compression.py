"""Stored resources compressed against the dictionary: round trips, sizes, and frames refused."""

import json
import pathlib

import pytest
import zstandard

from inbox import compression

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def listed(name):
    """The messages of a List Messages fixture, each as compact JSON bytes."""
    page = json.loads((FIXTURES / name).read_text())
    return [json.dumps(message, separators=(",", ":")).encode() for message in page["messages"]]


@pytest.mark.parametrize("name", ["list-messages-page-1.json", "list-messages-page-1.sdk-dto-variant.json"])
def test_both_listed_shapes_round_trip_in_well_under_their_size(name):
    """Metriport's Communication and its SDK's flat message: the dictionary holds both shapes,
    so each compresses to under 60% of its JSON even at 300-900 bytes, and comes back exact."""
    for body in listed(name):
        frame = compression.compress(body)
        assert compression.decompress(frame) == body
        assert len(frame) < 0.6 * len(body)


def test_the_dictionary_is_what_makes_short_resources_small():
    """The same resource compressed without the dictionary is markedly longer."""
    body = listed("list-messages-page-1.json")[0]
    alone = zstandard.ZstdCompressor(write_checksum=False, write_dict_id=False).compress(body)
    assert len(compression.compress(body)) < 0.8 * len(alone)


@pytest.mark.parametrize("frame", [
    b"",
    b"not a frame",
    compression.compress(b'{"id":"m-1","body":"' + b"x" * 300 + b'"}')[:-3],  # truncated
    zstandard.ZstdCompressor(write_content_size=False).compress(b'{"id":"m-1"}'),  # size unknown
])
def test_what_is_not_a_whole_frame_of_ours_is_refused(frame):
    with pytest.raises(ValueError):
        compression.decompress(frame)


def test_a_frame_declaring_more_than_a_resource_can_be_is_refused_before_decompressing():
    """A forged header claiming gigabytes is refused from the header alone."""
    frame = zstandard.ZstdCompressor().compress(b"\0" * (compression.MAX_BYTES + 1))
    assert len(frame) < 10_000
    with pytest.raises(ValueError, match="size"):
        compression.decompress(frame)
