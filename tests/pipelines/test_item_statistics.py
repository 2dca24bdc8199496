"""The prior and the smoothing of click rates."""
import pytest

from marn_tf.pipelines.item_statistics import RATE_PRIOR_STRENGTH, CumulativeCounts, global_prior, item_rate, smoothed_rate


def test_global_prior_counts_earlier_days_only():
    totals = CumulativeCounts.from_daily([(10, 8, 2), (11, 100, 100)])
    assert global_prior(totals, 10) == 0.5  # nothing before day 10: (0 + 1) / (0 + 2)
    assert global_prior(totals, 11) == pytest.approx(3 / 10)
    assert global_prior(CumulativeCounts.from_daily([]), 11) == 0.5  # no impressions at all


def test_rates_shrink_toward_the_prior():
    assert RATE_PRIOR_STRENGTH == 20.0
    assert smoothed_rate(0, 0, 0.3) == pytest.approx(0.3)
    assert smoothed_rate(180, 90, 0.3) == pytest.approx((90 + 6) / 200)
    assert item_rate(None, 5, 0.3) == pytest.approx(0.3)
    assert item_rate(CumulativeCounts.from_daily([(4, 10, 10), (5, 10, 0)]), 5, 0.3) == pytest.approx(16 / 30)
