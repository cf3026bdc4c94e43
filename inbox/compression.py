"""Stored resources compressed: Zstandard (RFC 8878) against a dictionary of Metriport's shapes.

A ~1 KB JSON resource is most of a record's Redis memory. Alone it compresses to about half, its
keys appearing once each; against a dictionary that holds the two shapes Metriport lists messages
in (its SDK's flat message and the FHIR Communication, values left empty), to about a third.
DEFLATE against the same dictionary compresses as well but costs ~18 µs per message, a third of a
full reconciliation's own time per message; Zstandard ~6 µs (bench/RESULTS.md).

The dictionary is part of the stored format: a record compressed with it opens only with exactly
these bytes, so they never change (other bytes would need marks of their own, inbox/crypto.py).
zstandard is imported at the first resource compressed or opened, not by commands that store
nothing (``reconcile --once`` with no new message starts ~16 ms sooner).
"""

import threading

#: See the module docstring: never changed once records are written with it.
DICTIONARY = (
    b'{"id":"","patientId":"","direction":"outbound","status":"in-progress","transportMethod":'
    b'"xcdr","destination":"","subject":"","body":"","attachments":[""],"sentAt":"","updatedAt":""}'
    b'{"id":"","patientId":"","direction":"inbound","status":"completed","transportMethod":'
    b'"direct","destination":"","subject":"","body":"","attachments":[""],"sentAt":"","updatedAt":""}'
    b'{"resourceType":"Communication","id":"","meta":{"lastUpdated":""},"status":"completed",'
    b'"subject":{"reference":"Patient/"},"topic":{"text":""},"sender":{"reference":"Practitioner/",'
    b'"display":""},"recipient":[{"type":"Organization","display":""}],"sent":"","received":"",'
    b'"payload":[{"contentString":""},{"contentReference":{"reference":"DocumentReference/"}}],'
    b'"extension":[{"url":"https://public.metriport.com/fhir/StructureDefinition/data-source.json",'
    b'"valueCoding":{"system":"https://public.metriport.com/fhir/StructureDefinition/'
    b'data-source.json","code":""}}]}'
)
#: a frame declaring more than this is not a resource this store wrote (Metriport's webhooks and
#: pages are far smaller): refused before anything is allocated for it
MAX_BYTES = 64 * 1024 * 1024

# One compressor and one decompressor per process, made at first use. Neither may serve two
# threads at once (the reconciler seals in its read-ahead thread; gthread workers are threads).
_lock = threading.Lock()
_codec = None


def compress(data):
    """``data`` as one Zstandard frame against ``DICTIONARY`` (its size in the frame header)."""
    compressor, _ = _codecs()
    with _lock:
        return compressor.compress(data)


def decompress(data):
    """The bytes ``compress`` was given; ValueError when ``data`` is not such a frame."""
    _, decompressor = _codecs()
    import zstandard

    try:
        size = zstandard.frame_content_size(data)
        if not 0 <= size <= MAX_BYTES:
            raise ValueError("the frame does not declare a resource's size")
        with _lock:
            plaintext = decompressor.decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None
    if len(plaintext) != size:
        raise ValueError("the frame is shorter than it declares")
    return plaintext


def _codecs():
    global _codec
    if _codec is None:
        import zstandard

        dictionary = zstandard.ZstdCompressionDict(DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        _codec = (
            # level 1: as small as the default level 3 for resources this short, 1 µs faster
            zstandard.ZstdCompressor(level=1, dict_data=dictionary, write_checksum=False,
                                     write_content_size=True, write_dict_id=False),
            zstandard.ZstdDecompressor(dict_data=dictionary),
        )
    return _codec
