"""Behaviour sequences, point-in-time statistics and splits on a hand-made log, expectations written out."""
import random

import pytest

from marn_tf.pipelines.item_statistics import CumulativeCounts
from marn_tf.pipelines.records import Event
from marn_tf.pipelines.user_history import HISTORY_ONLY, build_examples, sort_and_deduplicate

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400
D0 = T0 // DAY


def imp(t, item, clicked, request="r", position=1):
    return Event("u1", item, t, "impression", clicked, request, position, ("q",))


def beh(t, item, kind):
    return Event("u1", item, t, kind, 0, "", 0, ("",))


LOG = [
    imp(T0 + 100, "i1", 1, position=1),     # A  day 0, train
    imp(T0 + 100, "i2", 0, position=2),     # B  same request
    beh(T0 + 100, "i1", "click"),           #    logged in the same second: not in A's or B's sequence
    beh(T0 + 200, "i1", "cart"),
    imp(T0 + DAY + 10, "i2", 0),            # C  day 1
    beh(T0 + DAY + 20, "i1", "purchase"),
    imp(T0 + DAY + 20, "i3", 1),            # D  same second as the purchase: purchase not in it
    beh(T0 + DAY + 30, "i3", "click"),
    imp(T0 + 2 * DAY + 5, "i1", 0),         # E  day 2, validation; sequence truncated to 3
    imp(T0 + 3 * DAY, "i3", 1),             # F  exactly valid_end: test
]
# What every user did per item and day (this user plus others): (day, impressions, clicks).
STATS = {
    "i1": CumulativeCounts.from_daily([(D0, 2, 1), (D0 + 2, 1, 0)]),
    "i2": CumulativeCounts.from_daily([(D0, 1, 0), (D0 + 1, 1, 0)]),
    "i3": CumulativeCounts.from_daily([(D0 + 1, 1, 1), (D0 + 3, 1, 1)]),
}
# All items together per day (the sum of STATS): the prior p0 of day d is (clicks + 1) / (impressions + 2)
# before d: 1/2 on day 0, 2/5 on day 1, 3/7 on day 2, 3/8 on day 3.
TOTALS = CumulativeCounts.from_daily([(D0, 3, 1), (D0 + 1, 2, 1), (D0 + 2, 1, 0), (D0 + 3, 1, 1)])


def merged(examples):
    return [(split, {**shared, **own}) for split, shared, own in examples]


def run(config, log=LOG):
    events, duplicates = sort_and_deduplicate(log, config.events.behaviour_types)
    return merged(build_examples("u1", events, None, STATS.get, TOTALS, config)), duplicates


def test_sequences_are_strictly_earlier_and_truncated(make_config):
    examples, _ = run(make_config())
    got = [(split, v["item_id"], v["hist_item_id"], v["hist_event_type"], v["hist_time_gap"], v["hist_length"])
           for split, v in examples]
    assert got == [
        ("train", "i1", ["", "", ""], [0, 0, 0], [0, 0, 0], 0),                       # A
        ("train", "i2", ["", "", ""], [0, 0, 0], [0, 0, 0], 0),                       # B
        ("train", "i2", ["i1", "i1", ""], [1, 2, 0], [17, 17, 0], 2),                 # C: click, cart
        ("train", "i3", ["i1", "i1", ""], [1, 2, 0], [17, 17, 0], 2),                 # D: not the purchase
        ("validation", "i1", ["i1", "i1", "i3"], [2, 3, 1], [18, 17, 17], 3),         # E: last 3, oldest first
        ("test", "i3", ["i1", "i1", "i3"], [2, 3, 1], [18, 18, 18], 3),               # F
    ]


def test_statistics_are_point_in_time(make_config):
    examples, _ = run(make_config())
    candidate = [(v["item_stat_impressions"], v["item_stat_clicks"], v["item_stat_ctr"]) for _, v in examples]
    # Bucket values: impressions/clicks 1 + floor(log2(1 + n)); ctr 1 + floor(sqrt((c+.5)/(n+10)) * 19).
    assert candidate == [
        (0, 0, 0),  # A: nothing before day 0
        (0, 0, 0),  # B
        (2, 1, 5),  # C: i2 had 1 impression, 0 clicks on day 0 (B itself), none of day 1
        (0, 0, 0),  # D: i3 first shown on day 1
        (2, 2, 7),  # E: i1 on day 0: 2 impressions, 1 click; day 2 (E's own day) excluded
        (2, 2, 8),  # F: i3 on day 1: 1 impression, 1 click; day 3 excluded
    ]
    e = examples[4][1]
    # Behaviour items carry their statistics as of the day of the behaviour: the cart (day 0) knew
    # nothing of i1, the purchase (day 1) knew day 0, the click on i3 (day 1) knew nothing of day 1.
    assert e["hist_stat_impressions"] == [0, 2, 0]
    assert e["hist_stat_clicks"] == [0, 2, 0]
    assert e["hist_stat_ctr"] == [0, 7, 0]


def test_labels_positions_and_context(make_config):
    examples, _ = run(make_config())
    assert [v["label"] for _, v in examples] == [1, 0, 0, 1, 0, 1]
    assert [v["position"] for _, v in examples[:2]] == [1, 2]
    assert examples[0][1]["context_query"] == "q" and examples[0][1]["timestamp"] == T0 + 100


def test_input_order_does_not_matter_and_duplicates_are_dropped(make_config):
    shuffled = LOG + [LOG[1], LOG[3]]
    random.Random(3).shuffle(shuffled)
    examples, duplicates = run(make_config(), shuffled)
    assert examples == run(make_config())[0]
    assert sorted(duplicates) == sorted([LOG[1], LOG[3]])


def test_impressions_before_train_start_are_history_only(make_config):
    config = make_config(split={"train_start": "2026-01-02", "train_end": "2026-01-03", "valid_end": "2026-01-04"})
    examples, _ = run(config)
    assert [s for s, _ in examples] == [HISTORY_ONLY, HISTORY_ONLY, "train", "train", "validation", "test"]
    assert examples[2][1]["hist_item_id"][:2] == ["i1", "i1"]  # their behaviours still count as history


def test_profile_values_are_attached(make_config):
    from marn_tf.pipelines.records import UserProfile

    config = make_config(users={"features": ["gender", "age"]})
    events, _ = sort_and_deduplicate(LOG, config.events.behaviour_types)
    with_profile = merged(build_examples("u1", events, UserProfile("u1", ("f", "a3")), STATS.get, TOTALS, config))
    without = merged(build_examples("u1", events, None, STATS.get, TOTALS, config))
    assert (with_profile[0][1]["user_gender"], with_profile[0][1]["user_age"]) == ("f", "a3")
    assert (without[0][1]["user_gender"], without[0][1]["user_age"]) == ("", "")


def test_impressions_of_one_timestamp_share_their_sequence_object(make_config):
    events, _ = sort_and_deduplicate(LOG, make_config().events.behaviour_types)
    (_, shared_a, own_a), (_, shared_b, own_b), (_, shared_c, _) = list(
        build_examples("u1", events, None, STATS.get, TOTALS, make_config()))[:3]
    assert shared_a is shared_b and shared_c is not shared_a  # A and B: same request and second
    assert not set(shared_a) & set(own_a)
    assert "user_ctr" in shared_a and "item_ctr" in own_a


def test_click_rates_are_point_in_time_and_smoothed(make_config):
    examples, _ = run(make_config())
    # (clicks + 20 p0) / (impressions + 20), p0 of the impression's day (see TOTALS).
    assert [v["item_ctr"] for _, v in examples] == pytest.approx([
        1 / 2,                       # A: i1 unseen before day 0 (its day-0 impressions excluded): p0 of day 0
        1 / 2,                       # B
        (0 + 20 * 2 / 5) / (1 + 20),  # C: i2's day 0 (B), not day 1 (C itself)
        2 / 5,                       # D: i3 first shown on day 1: p0 of day 1
        (1 + 20 * 3 / 7) / (2 + 20),  # E: i1's day 0 (2 impressions, 1 click), not day 2
        (1 + 20 * 3 / 8) / (1 + 20),  # F: i3's day 1, not day 3
    ], rel=1e-12)
    # The user's own impressions strictly before the timestamp: A and B (same second) do not see each other.
    assert [v["user_ctr"] for _, v in examples] == pytest.approx([
        1 / 2,                       # A: no earlier impression
        1 / 2,                       # B: not A, clicked in the same second
        (1 + 20 * 2 / 5) / (2 + 20),  # C: A (clicked) and B
        (1 + 20 * 2 / 5) / (3 + 20),  # D: A, B, C
        (2 + 20 * 3 / 7) / (4 + 20),  # E: A, B, C, D (clicked)
        (2 + 20 * 3 / 8) / (5 + 20),  # F: ... and E (not clicked)
    ], rel=1e-12)


def test_user_rate_counts_history_only_impressions(make_config):
    config = make_config(split={"train_start": "2026-01-02", "train_end": "2026-01-03", "valid_end": "2026-01-04"})
    examples, _ = run(config)
    assert examples[2][1]["user_ctr"] == pytest.approx((1 + 20 * 2 / 5) / (2 + 20), rel=1e-12)  # C sees A and B


def test_user_rate_credits_a_click_when_its_click_event_is_logged(make_config):
    """A clicked at t, its click logged at t + 55 s: request B at t + 30 s has not seen the click, C at t + 60 s
    has; a click logged in the impression's own second counts from the next second on."""
    t = T0 + 1000
    log = [imp(t, "i1", 1, request="a"), imp(t + 30, "i2", 0, request="b"), beh(t + 55, "i1", "click"),
           imp(t + 60, "i3", 0, request="c")]
    examples, _ = run(make_config(), log)
    p0 = 1 / 2  # day 0
    assert [v["user_ctr"] for _, v in examples] == pytest.approx([
        p0,                             # A: nothing earlier
        (0 + 20 * p0) / (1 + 20),       # B: A shown, its click not yet logged
        (1 + 20 * p0) / (2 + 20),       # C: A's click logged at t + 55
    ], rel=1e-12)


def test_user_rate_ignores_clicked_impressions_without_click_events_and_unmatched_clicks(make_config):
    """A click event with no clicked impression of its item before it, and a clicked impression never
    followed by its click event, add no click: user_ctr counts only clicks that both happened and were shown."""
    t = T0 + 1000
    log = [beh(t, "i9", "click"), imp(t + 10, "i1", 1, request="a"), imp(t + 20, "i2", 0, request="b"),
           beh(t + 25, "i2", "click"), imp(t + 30, "i3", 0, request="c")]
    examples, _ = run(make_config(), log)
    assert examples[-1][1]["user_ctr"] == pytest.approx((0 + 20 / 2) / (2 + 20), rel=1e-12)  # A and B, no click


def test_duplicate_impressions_differing_only_in_the_label_keep_the_click(make_config):
    """Two copies of one impression, one clicked and one not: the clicked copy is kept, in any input order."""
    shown, clicked = imp(T0 + 100, "i1", 0), imp(T0 + 100, "i1", 1)
    for log in ([shown, clicked], [clicked, shown]):
        events, duplicates = sort_and_deduplicate(log, make_config().events.behaviour_types)
        assert events == [clicked] and duplicates == [shown]
