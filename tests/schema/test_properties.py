"""Property tests over the schema's inputs, through the real ASGI app: whatever a client sends,
the answer is a result or a 4xx/GraphQL error with a code in `extensions`, never a 5xx or a
hang, and every event acknowledged is in the live event log.

Inputs: random strings (control, formatting and bidi characters, huge, empty), NaN and
infinities (Python's JSON writes and reads them), impossible dates, values of the wrong type,
random JSON documents and bytes as bodies, random query strings over GET.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.schema.conftest import EVENTS, KEYS

HANG_GUARD_S = 60  # not a speed assertion: a request still open after a minute is a hang
# SHORTLIST_PROPERTY_EXAMPLES scales every property test for a deeper run than CI's.
SCALE = max(1, int(os.environ.get("SHORTLIST_PROPERTY_EXAMPLES", "50"))) / 50
PROPERTY = settings(
    max_examples=round(50 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(BIDI + "\x00\x07\x1b\n\t\r\x7f\u0085 a1'\"\\"), max_size=20),
    st.sampled_from(["", " ", "u0001", "i0001", "'; DROP TABLE items"]),
    st.sampled_from([257, 65, 100_000]).map(lambda n: "x" * n),  # over the id and label limits
)
GENRES = ["Drama", "Comedy", "Action", "Thriller", "Romance"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), nasty_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def rarely(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any], one_in: int = 10):
    """`usual`, and once in `one_in` draws `unusual` (a wrong type, NaN, an impossible date):
    a bad value anywhere refuses the whole call, so each must stay rare for calls to pass."""
    return st.integers(0, one_in - 1).flatmap(lambda n: unusual if n == 0 else usual)


users = rarely(
    rarely(st.sampled_from(["u000", "u001", "u599", "newcomer", "p1"]), nasty_text, 3), json_values
)
item_ids = rarely(
    rarely(st.sampled_from(["i0001", "i0002", "i0042", "i2999"]), nasty_text, 3), json_values
)
counts = rarely(
    rarely(st.integers(1, 200), st.sampled_from([0, -1, 201, 2**31 - 1]), 5),
    st.sampled_from([2**31, 2**63, 10**30, 1.5, float("nan"), float("inf")]) | json_values,
)
genres = rarely(st.sampled_from(GENRES), nasty_text, 4)
labels = rarely(st.none() | nasty_text, json_values, 20)
moments = rarely(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
    | st.sampled_from(["0001-01-01", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"]),
    st.sampled_from(
        [
            "2021-02-30",
            "2021-13-01",
            "0000-01-01",
            "2020-01-01T25:00:00",
            "yesterday",
            "2020-01-01T00:00:00+99:00",
        ]
    )
    | json_values,
    20,
)
dates = rarely(
    st.dates().map(str), st.sampled_from(["2021-02-30", "2021-02-29", "10000-01-01"]), 10
)
values = rarely(
    st.floats(0, 10) | st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]) | json_values,
    30,
)


async def post(client: httpx.AsyncClient, body: bytes | str, key: str | None = None) -> Any:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    async with asyncio.timeout(HANG_GUARD_S):
        response = await client.post("/graphql", content=body, headers=headers)
    return well_formed(response)


def well_formed(response: httpx.Response) -> dict[str, Any] | None:
    """Asserts the answer is no server error and that every error carries a code."""
    assert response.status_code < 500, response.text[:500]
    if not response.headers.get("content-type", "").startswith("application/json"):
        assert response.status_code == 200  # GraphiQL's page
        return None
    data = response.json()
    for error in data.get("errors") or []:
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["extensions"]["code"], str), error
        assert error["extensions"]["code"] != "INTERNAL", error
    if response.status_code >= 400:
        assert data["errors"]
    codes = sorted({e["extensions"]["code"] for e in data.get("errors") or []})
    event(f"{response.status_code} {' '.join(codes) or 'answered'}")
    return data  # type: ignore[no-any-return]


def body(query: str, variables: dict[str, Any]) -> str:
    return json.dumps({"query": query, "variables": variables}, allow_nan=True)


RECOMMEND = """query($u: ID!, $n: Int, $c: RecommendationContext, $f: ItemFilter) {
  recommendations(userId: $u, count: $n, context: $c, filter: $f) {
    degraded items { position item { id } explain { summary } } } }"""


@PROPERTY
@given(
    user=users,
    count=counts,
    context=st.none()
    | st.fixed_dictionaries({}, optional={"at": moments, "device": labels, "sessionId": labels}),
    filter=st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "genres": rarely(st.lists(genres, max_size=60), json_values),
            "excludeIds": rarely(st.lists(item_ids, max_size=5), json_values),
            "releasedAfter": dates,
        },
    ),
)
async def test_any_recommendations_input_answers(client, user, count, context, filter) -> None:
    data = await post(client, body(RECOMMEND, {"u": user, "n": count, "c": context, "f": filter}))
    if data and data.get("data"):
        items = data["data"]["recommendations"]["items"]
        assert isinstance(count, int) and len(items) <= count
        assert [i["position"] for i in items] == list(range(1, len(items) + 1))


OTHERS = """query($i: ID!, $n: Int) {
  similarItems(itemId: $i, count: $n) { score item { id } }
  item(id: $i) { id title } user(id: $i) { eventCount recentItems { id } } }"""


@PROPERTY
@given(ident=item_ids | users, count=counts)
async def test_any_item_and_user_input_answers(client, ident, count) -> None:
    await post(client, body(OTHERS, {"i": ident, "n": count}))


event_types = rarely(
    st.sampled_from(["VIEW", "CLICK", "RATING", "PURCHASE", "DISMISS"]),
    nasty_text | json_values,
    30,
)
events = st.lists(
    st.fixed_dictionaries(
        {"userId": users, "itemId": item_ids, "event": event_types},
        optional={"value": values, "at": moments, "device": labels, "sessionId": labels},
    ),
    max_size=8,
)


@PROPERTY
@given(batch=events, as_list=st.booleans())
async def test_any_events_answer_and_every_acknowledged_one_is_stored(
    live_client, batch, as_list
) -> None:
    log = live_client.app.state.engine.live.events
    before = await log.count()
    variables = {"e": batch if as_list or not batch else batch[0]}  # a lone object is a list
    data = await post(live_client, body(EVENTS, variables), KEYS["api_key"])
    accepted = 0
    if data and data.get("data"):
        result = data["data"]["recordEvents"]
        accepted = result["accepted"]
        sent = len(batch) if as_list or not batch else 1
        assert accepted + len(result["rejected"]) == sent
        assert all(r["code"] and r["reason"] for r in result["rejected"])
    assert await log.count() == before + accepted, "acknowledged means stored, nothing else"


items = st.lists(
    st.fixed_dictionaries(
        {"itemId": item_ids, "title": rarely(nasty_text, json_values)},
        optional={
            "description": labels,
            "genres": rarely(st.lists(genres, max_size=25), json_values),
            "series": labels,
            "released": dates,
        },
    ),
    max_size=3,
)
UPSERT = "mutation($i: [ItemInput!]!) { upsertItems(items: $i) { inserted updated } }"


@settings(PROPERTY, max_examples=round(25 * SCALE))
@given(batch=items)
async def test_any_items_answer(live_client, batch) -> None:
    await post(live_client, body(UPSERT, {"i": batch}), KEYS["admin_key"])


@PROPERTY
@given(
    document=st.one_of(
        json_values.map(lambda v: json.dumps(v, allow_nan=True)),
        st.fixed_dictionaries(
            {
                "query": rarely(
                    st.sampled_from([RECOMMEND, OTHERS, EVENTS, "{", "{ __typename }"]),
                    json_values,
                )
            },
            optional={"variables": json_values, "operationName": json_values},
        ).map(lambda v: json.dumps(v, allow_nan=True)),
        st.binary(max_size=200),
    )
)
async def test_any_body_answers(live_client, document) -> None:
    await post(live_client, document, KEYS["api_key"])


@settings(PROPERTY, max_examples=round(30 * SCALE))
@given(
    params=st.dictionaries(
        st.sampled_from(["query", "variables", "operationName"]),
        nasty_text.filter(lambda text: len(text) < 2000),  # a URL, not a body
        max_size=3,
    )
)
async def test_any_get_answers(client, params) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        response = await client.get("/graphql", params=params)
    well_formed(response)
