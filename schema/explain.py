"""The one human sentence that sums up why an item was picked."""

from __future__ import annotations

from collections.abc import Mapping

from app import domain

# Most personal reason first: a named anchor, then taste, then the catalog-wide reasons.
SOURCE_PHRASES = {
    "cf_ann": "people with similar taste liked it",
    "item_knn": "people who liked what you liked also liked it",
    "content_ann": "it matches what you usually enjoy",
    "fresh": "it is a new release",
    "exploration": "it is something a little different for you",
    "popular": "it is popular right now",
}
PRIORITY = ("item_to_item", *SOURCE_PHRASES)


def summary(
    pick: domain.Pick, item: domain.ItemView, anchors: Mapping[int, domain.ItemView]
) -> str:
    """E.g. "Because you watched Heat (1995), and people with similar taste liked it."."""
    reasons: list[str] = []
    hits = sorted(
        (h for h in pick.hits if h.source in PRIORITY), key=lambda h: PRIORITY.index(h.source)
    )
    for hit in hits:
        if hit.source == "item_to_item":
            if hit.anchor is not None and hit.anchor in anchors:
                reasons.append(f"because you watched {anchors[hit.anchor].title}")
        elif SOURCE_PHRASES[hit.source] not in reasons:
            reasons.append(SOURCE_PHRASES[hit.source])
    # A rule that placed the item is the reason it is shown here: it comes first.
    for rule, source in (("new_releases", "fresh"), ("exploration", "exploration")):
        if rule in {r.rule for r in pick.rules}:
            phrase = SOURCE_PHRASES[source]
            reasons = [phrase, *(r for r in reasons if r != phrase)]
    if not reasons:
        reasons.append("it ranked highly for you")
    text = ", and ".join(reasons[:2])
    return f"{text[0].upper()}{text[1:]}."
