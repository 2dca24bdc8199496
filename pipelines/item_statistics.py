"""Point-in-time item statistics: what was known about an item before the day of an event.

The pipeline sums impressions and clicks per (item, day); an event on day d sees the item's totals
over days strictly before d (a daily snapshot, as a production feature store would serve), so no
statistic contains the event itself or anything after it. Counters are then bucketised: bucket 0
means "no data", the others are log2 ranges (counts) or square-root CTR ranges.

Click rates are also written as smoothed probabilities (`smoothed_rate`): the floor a model must beat
sums their logits, and the model reads them as logits too. The prior of a rate on day d is the click
rate of all impressions before d (`global_prior`), from the same daily snapshot.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable, NamedTuple

SECONDS_PER_DAY = 86400
CTR_PRIOR_IMPRESSIONS = 10.0  # smoothing: an item with few impressions is pulled toward a low CTR
RATE_PRIOR_STRENGTH = 20.0  # a smoothed rate counts the prior as this many pseudo-impressions
STATISTIC_NAMES = ("impressions", "clicks", "ctr")  # order of the bucket triple below


def day_of(timestamp: int) -> int:
    return timestamp // SECONDS_PER_DAY


class CumulativeCounts(NamedTuple):
    """One item's daily counts as prefix sums: cum_*[k] = total over days[:k]."""

    days: tuple
    cum_impressions: tuple
    cum_clicks: tuple

    @classmethod
    def from_daily(cls, daily: Iterable[tuple[int, int, int]]) -> "CumulativeCounts":
        days, cum_imp, cum_clk = [], [0], [0]
        for day, impressions, clicks in sorted(daily):
            days.append(day)
            cum_imp.append(cum_imp[-1] + impressions)
            cum_clk.append(cum_clk[-1] + clicks)
        return cls(tuple(days), tuple(cum_imp), tuple(cum_clk))

    def before_day(self, day: int) -> tuple[int, int]:
        """(impressions, clicks) summed over the days strictly before `day`."""
        k = bisect.bisect_left(self.days, day)
        return self.cum_impressions[k], self.cum_clicks[k]


def log2_bucket(count: int, num_buckets: int) -> int:
    """0 for a missing count (< 0), else 1 + floor(log2(1 + count)), capped at num_buckets - 1."""
    if count < 0:
        return 0
    return min((1 + count).bit_length(), num_buckets - 1)  # bit_length(n) = 1 + floor(log2(n))


def ctr_bucket(impressions: int, clicks: int, num_buckets: int) -> int:
    """0 without impressions, else buckets of sqrt(smoothed CTR) in [1, num_buckets - 1]."""
    if impressions <= 0:
        return 0
    smoothed = (clicks + 0.5) / (impressions + CTR_PRIOR_IMPRESSIONS)
    return 1 + min(int(math.sqrt(smoothed) * (num_buckets - 1)), num_buckets - 2)


def statistic_buckets(counts: CumulativeCounts | None, day: int, num_buckets: int) -> tuple[int, int, int]:
    """Bucketised (impressions, clicks, ctr) of an item as known before `day`; an unseen item has 0s."""
    if counts is None:
        return 0, 0, 0
    impressions, clicks = counts.before_day(day)
    if impressions == 0:
        return 0, 0, 0
    return (log2_bucket(impressions, num_buckets), log2_bucket(clicks, num_buckets),
            ctr_bucket(impressions, clicks, num_buckets))


def global_prior(totals: CumulativeCounts, day: int) -> float:
    """Click rate of all impressions before `day`, Laplace-smoothed: 0.5 before any impression."""
    impressions, clicks = totals.before_day(day)
    return (clicks + 1) / (impressions + 2)


def smoothed_rate(impressions: int, clicks: int, prior: float) -> float:
    """clicks / impressions pulled toward `prior`: the prior itself without impressions, never 0 or 1."""
    return (clicks + RATE_PRIOR_STRENGTH * prior) / (impressions + RATE_PRIOR_STRENGTH)


def item_rate(counts: CumulativeCounts | None, day: int, prior: float) -> float:
    """An item's smoothed click rate as known before `day`; an unseen item has the prior."""
    impressions, clicks = counts.before_day(day) if counts is not None else (0, 0)
    return smoothed_rate(impressions, clicks, prior)
