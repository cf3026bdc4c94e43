"""Hypothesis strategies shared by the fuzz tests: any JSON value, message-shaped objects, and
webhook events built around them."""

from hypothesis import strategies as st

from inbox.settings import DIRECTIONS

#: any JSON value json.loads can return: surrogate halves included, since "\ud800" is valid JSON
json_text = st.text(st.characters(exclude_categories=()))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(json_text, children, max_size=5),
    max_leaves=20,
)
ids = st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z")
times = st.datetimes(timezones=st.timezones() | st.none()).map(lambda t: t.isoformat())
#: message-shaped objects: a valid id plus fields that matter to normalization, any values
message_like = st.fixed_dictionaries(
    {"id": ids},
    optional={
        "resourceType": st.just("Communication"),
        "status": st.sampled_from(["in-progress", "completed", "failed", "preparation"]) | json_values,
        "direction": st.sampled_from(DIRECTIONS) | json_values,
        "sent": times | json_values,
        "received": times,
        "sentAt": times,
        "updatedAt": times | json_values,
        "meta": st.fixed_dictionaries({}, optional={"lastUpdated": times | json_values}),
        "subject": st.fixed_dictionaries({}, optional={"reference": ids.map("Patient/{}".format)})
        | json_values,
        "patientId": ids | json_values,
        "payload": json_values,
    },
)

#: webhook events as Metriport frames them, with every part also allowed to be anything
webhook_events = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {"type": st.sampled_from(["message.received", "message.status", "ping",
                                      "medical.consolidated-data"]) | json_values},
            optional={"messageId": st.uuids().map(str) | json_values, "when": times},
        )
        | json_values,
    },
    optional={
        "payload": st.fixed_dictionaries({"communication": message_like}) | message_like
        | st.lists(message_like, max_size=3) | json_values,
        "ping": json_text,
    },
)
