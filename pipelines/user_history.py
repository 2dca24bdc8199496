"""One user's events -> training examples with behaviour sequences (pure Python, unit-tested).

Rules, all of them tested in tests/pipelines/test_user_history.py:
* Events are ordered by (timestamp, behaviour-type order, item id, the rest): deterministic.
* An event equal to an earlier one in (item, timestamp, type, request, position) is a duplicate; of duplicate
  impressions that differ in `clicked`, the clicked one is kept.
* An impression's sequence holds behaviour events *strictly earlier* than it: a click logged in the
  same second as the impression is not in it. The most recent `max_length` are kept, oldest first.
* Each behaviour carries its property: event type and the time gap to the impression (bucketised),
  and the item's statistics as of the day of that behaviour.
* Click rates, smoothed toward the global click rate before the impression's day: the candidate's
  (`item_ctr`, from its daily snapshot) and the user's own (`user_ctr`: the user's impressions strictly
  earlier than this one, history-only ones included, and the clicks among them whose click event is
  strictly earlier). A clicked impression's click is credited when its click event (`events.click_type`
  on the same item, at or after the impression, matched oldest impression first) is logged, not when the
  impression is: the label is known only once the user has clicked. A clicked impression without a click
  event is never credited.
* Impressions split by time: before train_start history only, then train / validation / test.
"""
from __future__ import annotations

import collections
from typing import Callable, Iterable, Iterator, Optional

from marn_tf.config import Config

from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines.item_statistics import (STATISTIC_NAMES, CumulativeCounts, day_of, global_prior, item_rate,
                                       smoothed_rate, statistic_buckets)
from marn_tf.pipelines.records import Event, UserProfile

HISTORY_ONLY = "history_only"

StatsLookup = Callable[[str], Optional[CumulativeCounts]]


def sort_and_deduplicate(events: Iterable[Event], behaviour_types: list[str]) -> tuple[list[Event], list[Event]]:
    """(kept events in order, duplicates)."""
    rank = {t: i for i, t in enumerate(behaviour_types)}  # impressions rank last among equal times
    # -clicked: of two impressions equal but for the label, the clicked one comes first and is kept
    ordered = sorted(events, key=lambda e: (e.timestamp, rank.get(e.event_type, len(rank)), e.item_id, e.event_type,
                                            e.request_id, e.position, -e.clicked, e))
    kept, duplicates, seen = [], [], set()
    for e in ordered:
        key = (e.item_id, e.timestamp, e.event_type, e.request_id, e.position)
        if key in seen:
            duplicates.append(e)
        else:
            seen.add(key)
            kept.append(e)
    return kept, duplicates


def split_of(timestamp: int, config: Config) -> str:
    start, train_end, valid_end = config.split.boundaries
    if start is not None and timestamp < start:
        return HISTORY_ONLY
    if timestamp < train_end:
        return "train"
    return "validation" if timestamp < valid_end else "test"


def build_examples(user_id: str, events: list[Event], profile: Optional[UserProfile], stats: StatsLookup,
                   totals: CumulativeCounts, config: Config) -> Iterator[tuple[str, dict, dict]]:
    """(split, shared, own) for every impression of the user; `events` sorted and deduplicated, `totals`
    the daily impressions and clicks of all items together (the prior of the click rates).

    The example is {**shared, **own}. `shared` holds the user and behaviour-sequence features, which
    all impressions of one timestamp (typically one request) have in common: it is the same dict
    object for them, so a writer can serialize it once. `own` holds the impression's own features.
    Impressions before train_start come out with split HISTORY_ONLY and empty dicts (they are counted).
    """
    f = config.events
    max_len = config.sequence.max_length
    num_buckets = config.statistics.num_buckets
    type_index = {t: i + 1 for i, t in enumerate(f.behaviour_types)}
    user = {ES.USER_ID: user_id}
    profile_values = profile.features if profile else ("",) * len(config.users.features)
    user.update((ES.profile_feature(name), value) for name, value in zip(config.users.features, profile_values))
    history: collections.deque = collections.deque(maxlen=max_len)  # (timestamp, item, type index, stats)
    user_impressions = user_clicks = 0  # over the timestamps already processed
    unclicked_yet: dict[str, collections.deque] = collections.defaultdict(collections.deque)  # item -> times
    i = 0
    while i < len(events):
        # All events of one timestamp: impressions see only behaviours from before it.
        t = events[i].timestamp
        j = i
        while j < len(events) and events[j].timestamp == t:
            j += 1
        same_time = events[i:j]
        day = day_of(t)
        shared = prior = None
        for e in same_time:
            if e.event_type != f.impression_type:
                continue
            split = split_of(t, config)
            if split == HISTORY_ONLY:
                yield split, {}, {}
                continue
            if shared is None:
                prior = global_prior(totals, day)
                shared = _sequence_features(user, history, t, max_len,
                                            smoothed_rate(user_impressions, user_clicks, prior))
            yield split, shared, _impression_features(e, stats, config, num_buckets, prior)
        for e in same_time:  # impressions first, so a click logged in their second can match them
            if e.event_type == f.impression_type:
                user_impressions += 1
                if e.clicked:
                    unclicked_yet[e.item_id].append(t)
        for e in same_time:
            if e.event_type == f.click_type and unclicked_yet.get(e.item_id):
                unclicked_yet[e.item_id].popleft()
                user_clicks += 1
            if e.event_type in type_index:
                history.append((e.timestamp, e.item_id, type_index[e.event_type],
                                statistic_buckets(stats(e.item_id), day, num_buckets)))
        i = j


def _sequence_features(user: dict, history, t: int, max_len: int, user_ctr: float) -> dict:
    n = len(history)
    pad = max_len - n
    if n:
        times, items, types, buckets = zip(*history)
        stat_lists = list(zip(*buckets))
    else:
        times = items = types = ()
        stat_lists = [()] * len(STATISTIC_NAMES)
    gap_cap = ES.TIME_GAP_BUCKETS - 1
    values = dict(user)
    values.update({
        ES.HIST_ITEM_ID: list(items) + [""] * pad,
        ES.HIST_EVENT_TYPE: list(types) + [0] * pad,
        # 1 + floor(log2(1 + seconds)), capped; bit_length computes it exactly, without floats
        ES.HIST_TIME_GAP: [min((1 + t - h).bit_length(), gap_cap) for h in times] + [0] * pad,
        ES.HIST_LENGTH: n,
        ES.USER_CTR: user_ctr,
    })
    for name, past in zip(STATISTIC_NAMES, stat_lists):
        values[ES.hist_stat_feature(name)] = list(past) + [0] * pad
    return values


def _impression_features(e: Event, stats: StatsLookup, config: Config, num_buckets: int, prior: float) -> dict:
    counts, day = stats(e.item_id), day_of(e.timestamp)
    values = {ES.LABEL: e.clicked, ES.ITEM_ID: e.item_id, ES.POSITION: e.position, ES.TIMESTAMP: e.timestamp,
              ES.REQUEST_ID: e.request_id, ES.ITEM_CTR: item_rate(counts, day, prior)}
    for name, value in zip(config.events.context, e.context):
        values[ES.context_feature(name)] = value
    for name, now in zip(STATISTIC_NAMES, statistic_buckets(counts, day, num_buckets)):
        values[ES.item_stat_feature(name)] = now
    return values
