"""The realistic world of `marn generate-data --world realistic`: logs shaped like a production site's, where
the content is weak and the IDs carry most of what can be learnt. It is the check that a model does not
win only on the planted world (`synthetic_world.py`), whose structure rewards MARN's ideas by construction.

* **Collaborative taste.** Every item has a hidden factor z (8-d) and every user a taste t; the true click
  logit of user u on item i at position k is

      w_taste * z(i).t(u) / sqrt(8) + w_recent * z(i).r(u) / sqrt(8) + w_pop * pop(i)
      - 0.05 * (k - 1) + bias + noise

  with r(u) the mean factor of the user's recent clicks, each weighing RECENT_DECAY^days and shrunk
  towards 0 by one pseudo-click (what the behaviour sequence shows),
  pop(i) the log popularity standardised over impressions, and noise ~ N(0, CLICK_NOISE^2) per impression
  (clicks the features cannot explain); LABEL_FLIP of the labels are then flipped. The oracle's click
  probability integrates both out: it is the ceiling of a model that knew z, t and r.
* **Heavy tails.** User activity is log-normal (most users visit a handful of times, a few hundreds
  of times); items are shown by Zipf popularity over the whole catalog, boosted for a week after release.
* **Cold users and items.** NEW_USER_SHARE of the users arrive on a day drawn over the period (many first
  seen in the validation or test window); COLD_SHARE of the items are released during it.
* **Drift.** A taste moves each day, t <- DRIFT t + sqrt(1 - DRIFT^2) N(0, I).
* **Weak, noisy content.** 8 coarse categories, each a loose cluster of z; shops and brands that say
  little; short titles: the category word half the time, one of 64 topic words (the nearest topic of a
  noisy z) 40% of the time, and filler; an image vector for IMAGE_SHARE of the items, a weak projection
  of z under heavy noise; catalog counters for STATISTICS_SHARE of the items (the rest unknown).

`world.json` records the constants under `planted` and the oracle AUC as for the planted world.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from marn_tf.pipelines.synthetic_world import (FILLER, Catalog, GeneratorOptions, ImpressionTruth, behaviour_event,
                                               item_id)

CATEGORY_WORDS = ["fashion", "electronics", "home", "beauty", "sports", "food", "toys", "books"]
FACTOR_DIM = 8
TOPICS = 64
TOPIC_WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "ru", "si", "ta", "vo") for b in
               ("ra", "len", "mo", "dix", "pa", "tor", "vi", "zu")]
CATEGORY_SPREAD = 0.6  # sd of a category's centre; items scatter around it with sd 1
COLD_SHARE = 0.4
NEW_USER_SHARE = 0.4
IMAGE_SHARE, STATISTICS_SHARE = 0.3, 0.4
TITLE_CATEGORY_SHARE, TITLE_TOPIC_SHARE = 0.5, 0.4
TOPIC_NOISE = 1.0  # sd added to z before its nearest topic is read
IMAGE_SIGNAL = 0.35  # share of the image vector's variance that comes from z
IMAGE_RMS = 0.15
ZIPF_EXPONENT = 1.05
RELEASE_BOOST, RELEASE_BOOST_DAYS = 4.0, 7
ACTIVITY_SIGMA = 1.4  # log-normal sd of a user's visits per day (`sessions_per_day` is their mean)
DRIFT = 0.93
W_TASTE, W_RECENT, W_POP = 1.4, 1.2, 0.6
RECENT_DECAY = 0.8
CLICK_NOISE, LABEL_FLIP = 1.0, 0.02
# E[sigmoid(l + N(0, s^2))] ~ sigmoid(l / sqrt(1 + pi s^2 / 8)): the noise integrated out, so the oracle cannot
# know it either
NOISE_SCALE = 1 / math.sqrt(1 + math.pi * CLICK_NOISE ** 2 / 8)
POSITION_PENALTY = 0.05
CLICK_BIAS = -3.2


def build_catalog(opts: GeneratorOptions, rng: np.random.Generator) -> Catalog:
    n, num_cat = opts.items, len(CATEGORY_WORDS)
    centres = rng.normal(scale=CATEGORY_SPREAD, size=(num_cat, FACTOR_DIM))
    category = rng.integers(0, num_cat, n)
    factor = centres[category] + rng.normal(size=(n, FACTOR_DIM))
    num_shops, num_brands = max(n // 25, 5), max(n // 40, 5)
    shop, brand = rng.integers(0, num_shops, n), rng.integers(0, num_brands, n)
    release_day = np.where(rng.random(n) < COLD_SHARE, rng.integers(1, opts.days, n), 0)
    popularity = 1.0 / rng.permutation(np.arange(1, n + 1)) ** ZIPF_EXPONENT
    log_pop = np.log(popularity)
    # standardised over impressions (exposure-weighted), so a shown item's pop is about N(0, 1)
    mean = np.average(log_pop, weights=popularity)
    pop = (log_pop - mean) / math.sqrt(np.average((log_pop - mean) ** 2, weights=popularity))

    topic_centres = rng.normal(size=(TOPICS, FACTOR_DIM))
    noisy = factor + TOPIC_NOISE * rng.normal(size=factor.shape)
    topic = np.argmin(((noisy[:, None, :] - topic_centres[None]) ** 2).sum(-1), axis=1)
    title = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(1, 3)), replace=False))
        if rng.random() < TITLE_CATEGORY_SHARE:
            words.append(CATEGORY_WORDS[category[i]])
        if rng.random() < TITLE_TOPIC_SHARE:
            words.append(TOPIC_WORDS[topic[i]])
        rng.shuffle(words)
        title.append(" ".join(words))
    has_image = rng.random(n) < IMAGE_SHARE
    projection = rng.normal(size=(FACTOR_DIM, opts.image_dim)) / math.sqrt(FACTOR_DIM)
    signal = factor @ projection
    image = math.sqrt(IMAGE_SIGNAL) * signal / signal.std() + math.sqrt(1 - IMAGE_SIGNAL) * rng.normal(
        size=signal.shape)
    image *= IMAGE_RMS * math.sqrt(opts.image_dim) / np.linalg.norm(image, axis=1, keepdims=True)
    has_statistics = rng.random(n) < STATISTICS_SHARE
    sales = rng.poisson(np.exp(1.5 + 0.8 * pop))
    reviews = rng.binomial(sales, 0.1)
    by_category = [np.flatnonzero(category == c) for c in range(num_cat)]
    return Catalog(category=category, shop=shop, brand=brand, style=factor, colour=topic, title_colour=topic,
                   material=np.zeros(n, int), quality=pop, release_day=release_day, image=image.astype(np.float32),
                   has_image=has_image, title=title, sales=sales, reviews=reviews, zipf_weight=popularity,
                   kinds=["-"] * num_cat, by_category=by_category, has_statistics=has_statistics)


def generate_user(u: int, cat: Catalog, opts: GeneratorOptions, rng: np.random.Generator,
                  start: int, truth: ImpressionTruth) -> Iterator[dict]:
    """Events of one user, in time order; each impression's true click probability goes to `truth`."""
    taste = rng.normal(size=FACTOR_DIM)
    recent_sum, recent_count = np.zeros(FACTOR_DIM), 0.0
    first_day = int(rng.integers(0, opts.days)) if rng.random() < NEW_USER_SHARE else 0
    activity = opts.sessions_per_day * math.exp(ACTIVITY_SIGMA * rng.normal() - ACTIVITY_SIGMA ** 2 / 2)
    uid = f"u{u:07d}"
    for day in range(opts.days):
        taste = DRIFT * taste + math.sqrt(1 - DRIFT ** 2) * rng.normal(size=FACTOR_DIM)
        recent_sum *= RECENT_DECAY
        recent_count *= RECENT_DECAY
        if day < first_day:
            continue
        released = np.flatnonzero(cat.release_day <= day)
        if len(released) == 0:
            continue
        age = day - cat.release_day[released]
        weight = cat.zipf_weight[released] * np.where(age < RELEASE_BOOST_DAYS, RELEASE_BOOST, 1.0)
        weight /= weight.sum()
        day_events = []
        for s in sorted(rng.integers(0, 86400 - 3600, rng.poisson(activity))):
            t = start + day * 86400 + int(s)
            for r in range(int(rng.integers(1, 3))):
                k = min(opts.impressions_per_request, len(released))
                shown = released[rng.choice(len(released), size=k, replace=False, p=weight)]
                positions = np.arange(1, k + 1)
                z = cat.style[shown]
                recent = recent_sum / (recent_count + 1.0)
                logit = (W_TASTE * z @ taste / math.sqrt(FACTOR_DIM) + W_RECENT * z @ recent / math.sqrt(FACTOR_DIM)
                         + W_POP * cat.quality[shown] - POSITION_PENALTY * (positions - 1) + CLICK_BIAS)
                p = 1 / (1 + np.exp(-logit * NOISE_SCALE))
                p = (1 - LABEL_FLIP) * p + LABEL_FLIP * (1 - p)  # a flipped label is a click of probability 1 - p
                clicked = rng.random(k) < p
                truth.add(day, p, clicked)
                request = f"r{u:07d}_{day:03d}_{s:05d}_{r}"
                query = CATEGORY_WORDS[cat.category[shown[0]]] if rng.random() < 0.3 else ""
                for item, pos, clk in zip(shown, positions, clicked):
                    day_events.append(dict(user_id=uid, item_id=item_id(item), timestamp=t, event_type="impression",
                                           clicked=int(clk), request_id=request, position=int(pos), query=query))
                    if clk:
                        t_click = t + int(rng.integers(2, 60))
                        day_events.append(behaviour_event(uid, item, t_click, "click"))
                        recent_sum += cat.style[item]
                        recent_count += 1.0
                        if rng.random() < 0.15:
                            day_events.append(behaviour_event(uid, item, t_click + int(rng.integers(60, 600)),
                                                              "cart"))
                t += int(rng.integers(30, 120))
        day_events.sort(key=lambda e: e["timestamp"])
        yield from day_events


def planted() -> dict:
    """The constants of the realistic world, for world.json."""
    return {"world": "realistic", "factor_dim": FACTOR_DIM, "categories": len(CATEGORY_WORDS), "topics": TOPICS,
            "category_spread": CATEGORY_SPREAD, "cold_share": COLD_SHARE, "new_user_share": NEW_USER_SHARE,
            "image_share": IMAGE_SHARE, "statistics_share": STATISTICS_SHARE,
            "title_category_share": TITLE_CATEGORY_SHARE, "title_topic_share": TITLE_TOPIC_SHARE,
            "topic_noise": TOPIC_NOISE, "image_signal": IMAGE_SIGNAL, "zipf_exponent": ZIPF_EXPONENT,
            "release_boost": RELEASE_BOOST, "release_boost_days": RELEASE_BOOST_DAYS,
            "activity_sigma": ACTIVITY_SIGMA, "drift": DRIFT,
            "click_weights": {"taste": W_TASTE, "recent": W_RECENT, "popularity": W_POP},
            "recent_decay": RECENT_DECAY, "click_noise": CLICK_NOISE, "label_flip": LABEL_FLIP,
            "position_penalty": POSITION_PENALTY, "click_bias": CLICK_BIAS}
