from app import domain
from schema.explain import summary

HEAT = domain.ItemView("7", "Heat (1995)", "", ["Crime"], None, None, None, 0.9, 4.1)
ITEM = domain.ItemView("9", "Ronin (1998)", "", ["Action"], None, None, None, 0.5, 3.8)


def pick(hits, rules=()):
    return domain.Pick(9, 0.5, list(hits), None, {}, list(rules))


def test_anchor_comes_first_then_taste():
    hits = [
        domain.SourceHit("popular", 1, 1.0),
        domain.SourceHit("item_to_item", 3, 0.5, anchor=7),
        domain.SourceHit("cf_ann", 9, 2.0),
    ]
    assert summary(pick(hits), ITEM, {7: HEAT}) == (
        "Because you watched Heat (1995), and people with similar taste liked it."
    )


def test_exploration_slot_says_so_first():
    hits = [domain.SourceHit("cf_ann", 40, 1.0), domain.SourceHit("exploration", 2, 0.3)]
    rules = [domain.RuleEffect("exploration", "exploration slot: popularity percentile 0.30")]
    text = summary(pick(hits, rules), ITEM, {})
    assert text.startswith("It is something a little different for you, and people")


def test_no_known_source_still_one_sentence():
    assert summary(pick([]), ITEM, {}) == "It ranked highly for you."
