"""The planted world of `marn generate-data`: catalog, users and the true click model, whose structure gives
MARN's questions a known answer. `world.json` records its constants under `planted` (`planted()`).

* **Category kinds.** 24 categories, a third each *visual* (clothing-like), *popularity*
  (phones/groceries-like) and *mixed*; `world.json` lists each category's kind (`category_kind`),
  so modality weights per category can be checked against the truth. A request shows items of one
  category; the true click logit of user u on item i at position k is

      w_style * style(i).taste(u) / sqrt(8) + w_colour * [colour(i) is one of u's 2 favourites]
      + w_quality * quality(i) + w_material * [material(i) is u's favourite]
      + 1.2 * min(recent_category(u, category(i)), 2) + 0.6 * min(recent_colour(u, colour(i)), 2)
      - 0.06 * (k - 1) - 3.65

  with (w_style, w_colour, w_quality, w_material) = `CLICK_WEIGHTS[kind]`: visual (1.4, 1.0, 0.1, 0),
  popularity (0.1, 0.5, 1.5, 0), mixed (0.7, 0.7, 0.7, 0.8). The style (8-d) is seen only in the
  image, the material only in the title, the quality only through statistics (sales ~ Poisson(e^(2 +
  1.2 quality)), reviews ~ 10% of sales, and the clicks quality earns) and Zipf exposure.
* **A shared factor with per-modality noise.** The colour (12 values) matters in every kind and in
  the sequence: `recent_category` and `recent_colour` count the user's clicks per category and per
  colour, decaying by 0.7 a day. The colour is in the image *and* in the title, each with
  independent noise: the image holds a perceived colour (one-hot colour + N(0, 0.45^2) per colour),
  projected like the style; the title's colour word is the true colour with probability 0.75, else
  another colour. Either modality alone gives the colour about 3 times in 4 (the image through a
  linear read-out at image_dim 64); where they agree (about half the items with both) they are right
  99 times in 100, so combining modalities denoises (`tests/pipelines/test_synthetic_data.py`).
* **Complementary missingness.** 25% of items have an image only, 25% a title only, 50% both; IDs
  and statistics are always there.
* **Little to memorise.** 6,000 items (the default) with Zipf exposure within a category; 35% are
  released on a day 1..days-1 (cold items, never shown before that day), so content matters.
* **Image vectors** are style, perceived colour and category through fixed random projections plus
  noise, each scaled to RMS 0.15 per component (norm 0.15 * sqrt(image_dim)): the scale of learned
  embeddings, so no modality dominates by magnitude.
* **Users** have category interests (Dirichlet) that drift day by day, a style taste, 2 favourite
  colours and a favourite material; they click more in categories and colours they clicked
  recently, so behaviour sequences predict clicks. Clicks are followed by click/cart/purchase
  behaviour events a few seconds later (after the impression: a pipeline that leaks the future
  would see them).
* **Oracle.** Every impression's true click probability is kept; `world.json`'s `oracle` holds its
  AUC on the train, validation and test windows of `dataset_config` (impressions before the train
  window excluded): the ceiling for a model that knew the hidden factors.
* **Bad records** (`bad_event`): every kind the pipeline must dead-letter, a small optional share.
"""
from __future__ import annotations

import array
import dataclasses
import math
from typing import Iterator, Optional

import numpy as np

KINDS = ("visual", "popularity", "mixed")
CATEGORY_WORDS = [
    "dress", "shirt", "shoes", "jacket", "skirt", "bag", "scarf", "hat",  # visual
    "phone", "charger", "coffee", "rice", "battery", "cable", "tea", "soap",  # popularity
    "lamp", "mug", "chair", "pillow", "watch", "toy", "towel", "bottle",  # mixed
]
COLOURS = ["red", "pink", "blue", "navy", "green", "black", "white", "grey", "beige", "yellow", "purple",
           "brown"]
MATERIALS = ["silk", "cotton", "leather", "wool", "steel", "plastic"]
FILLER = ["new", "classic", "style", "premium", "sale", "official", "hot", "2026", "pro", "mini", "lite",
          "set", "gift", "original", "plus", "max", "basic", "daily", "soft", "fast"]
STYLE_DIM = 8
# The planted structure (module docstring); world.json records these under "planted".
COLD_SHARE = 0.35  # items released during the period
IMAGE_ONLY_SHARE, TITLE_ONLY_SHARE = 0.25, 0.25  # the other items have both
TITLE_COLOUR_ACCURACY = 0.75  # else the title names another colour
IMAGE_COLOUR_NOISE = 0.45  # sd per colour of the perceived colour the image shows
IMAGE_RMS = 0.15  # per component, every image vector
CLICK_WEIGHTS = {  # kind -> weights of (style match, favourite colour, quality, favourite material)
    "visual": (1.4, 1.0, 0.1, 0.0),
    "popularity": (0.1, 0.5, 1.5, 0.0),
    "mixed": (0.7, 0.7, 0.7, 0.8),
}
CATEGORY_INTEREST, COLOUR_INTEREST = 1.2, 0.6  # per recent click in the category / colour, counted up to 2
RECENT_DECAY = 0.7  # a day
POSITION_PENALTY = 0.06  # per slot below the first
CLICK_BIAS = -3.65
TRAIN_START_DAY = 2  # earlier impressions are history only


@dataclasses.dataclass
class GeneratorOptions:
    output: str
    users: int = 1000
    items: int = 6000
    days: int = 21
    start_date: str = "2026-09-01"
    image_dim: int = 64
    sessions_per_day: float = 0.4  # mean over users; heavy users have many more
    impressions_per_request: int = 10
    format: str = "jsonl"
    gzip: bool = True
    shards: int = 4
    bad_record_rate: float = 0.0005
    seed: int = 7
    world: str = "planted"  # or "realistic" (realistic_world.py)


@dataclasses.dataclass
class Catalog:
    category: np.ndarray  # int, category index per item
    shop: np.ndarray
    brand: np.ndarray
    style: np.ndarray  # [n, STYLE_DIM]
    colour: np.ndarray
    title_colour: np.ndarray  # the colour the title names (if it has one)
    material: np.ndarray
    quality: np.ndarray
    release_day: np.ndarray
    image: np.ndarray  # [n, image_dim] float32
    has_image: np.ndarray
    title: list  # str, or None when the item has no title
    sales: np.ndarray
    reviews: np.ndarray
    zipf_weight: np.ndarray
    kinds: list  # category index -> kind
    by_category: list  # category index -> its items in order of release day
    has_statistics: Optional[np.ndarray] = None  # None: every item's counters are known

    def released(self, c: int, day: int) -> np.ndarray:
        """Items of category c on sale on `day`."""
        members = self.by_category[c]
        return members[:np.searchsorted(self.release_day[members], day, side="right")]


@dataclasses.dataclass
class Taste:
    """A user's lasting preferences."""
    style: np.ndarray  # [STYLE_DIM]
    colours: np.ndarray  # 2 favourite colours
    material: int


def item_id(i: int) -> str:
    return f"i{i:07d}"


def build_catalog(opts: GeneratorOptions, rng: np.random.Generator) -> Catalog:
    n, num_cat, num_col = opts.items, len(CATEGORY_WORDS), len(COLOURS)
    kinds = [KINDS[c // (num_cat // len(KINDS))] for c in range(num_cat)]
    category = rng.integers(0, num_cat, n)
    num_shops, num_brands = max(n // 10, 5), max(n // 15, 5)
    shop_category = rng.integers(0, num_cat, num_shops)  # shops specialise in one category
    shop = np.array([rng.choice(np.flatnonzero(shop_category == c)) if (shop_category == c).any()
                     else rng.integers(num_shops) for c in category])
    brand = rng.integers(0, num_brands, n)
    style = rng.normal(size=(n, STYLE_DIM))
    colour = rng.integers(0, num_col, n)
    material = rng.integers(0, len(MATERIALS), n)
    quality = rng.normal(size=n)
    release_day = np.where(rng.random(n) < COLD_SHARE, rng.integers(1, opts.days, n), 0)
    # 0: image only, 1: title only, 2: both
    content = rng.choice(3, n, p=[IMAGE_ONLY_SHARE, TITLE_ONLY_SHARE, 1 - IMAGE_ONLY_SHARE - TITLE_ONLY_SHARE])
    has_image, has_title = content != 1, content != 0
    # The image: fixed random projections of style, perceived colour and category, plus noise, at IMAGE_RMS.
    p_style = rng.normal(size=(STYLE_DIM, opts.image_dim)) / math.sqrt(STYLE_DIM)
    p_colour = rng.normal(size=(num_col, opts.image_dim))
    p_cat = rng.normal(size=(num_cat, opts.image_dim)) * 0.5
    perceived = np.eye(num_col)[colour] + IMAGE_COLOUR_NOISE * rng.normal(size=(n, num_col))
    image = style @ p_style + perceived @ p_colour + p_cat[category] + 0.3 * rng.normal(size=(n, opts.image_dim))
    image *= IMAGE_RMS * math.sqrt(opts.image_dim) / np.linalg.norm(image, axis=1, keepdims=True)
    title_colour = np.where(rng.random(n) < TITLE_COLOUR_ACCURACY, colour,
                            (colour + rng.integers(1, num_col, n)) % num_col)
    title = []
    for i in range(n):
        if not has_title[i]:
            title.append(None)
            continue
        words = [COLOURS[title_colour[i]], MATERIALS[material[i]], CATEGORY_WORDS[category[i]]]
        words += list(rng.choice(FILLER, size=rng.integers(1, 4), replace=False))
        rng.shuffle(words)
        title.append(f"b{brand[i]} " + " ".join(words))
    sales = rng.poisson(np.exp(2.0 + 1.2 * quality))
    reviews = rng.binomial(sales, 0.1)
    # Zipf exposure within each category: rank items by a noisy quality.
    zipf_weight = np.zeros(n)
    by_category = []
    for c in range(num_cat):
        members = np.flatnonzero(category == c)
        order = members[np.argsort(-(quality[members] + rng.normal(size=len(members))))]
        zipf_weight[order] = 1.0 / np.arange(1, len(order) + 1) ** 1.1
        by_category.append(members[np.argsort(release_day[members], kind="stable")])
    return Catalog(category, shop, brand, style, colour, title_colour, material, quality, release_day,
                   image.astype(np.float32), has_image, title, sales, reviews, zipf_weight, kinds, by_category)


def click_logit(cat: Catalog, items: np.ndarray, kind: str, taste: Taste, recent_category: float,
                recent_colour: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The planted click model (module docstring) for the items of one request, all of one category `kind`."""
    w_style, w_colour, w_quality, w_material = CLICK_WEIGHTS[kind]
    colour = cat.colour[items]
    return (w_style * cat.style[items] @ taste.style / math.sqrt(STYLE_DIM)
            + w_colour * np.isin(colour, taste.colours) + w_quality * cat.quality[items]
            + w_material * (cat.material[items] == taste.material)
            + CATEGORY_INTEREST * min(recent_category, 2.0) + COLOUR_INTEREST * np.minimum(recent_colour[colour], 2.0)
            - POSITION_PENALTY * (positions - 1) + CLICK_BIAS)


class ImpressionTruth:
    """Day, true click probability and label of every impression, 7 bytes each: the oracle figure's data."""

    def __init__(self) -> None:
        self.day, self.p, self.label = array.array("H"), array.array("f"), array.array("B")

    def add(self, day: int, p: np.ndarray, clicked: np.ndarray) -> None:
        self.day.frombytes(np.full(len(p), day, np.uint16).tobytes())
        self.p.frombytes(p.astype(np.float32).tobytes())
        self.label.frombytes(clicked.astype(np.uint8).tobytes())

    def oracle_auc(self, opts: GeneratorOptions) -> dict[str, Optional[float]]:
        """AUC of the true probability per split window: the ceiling a model given the hidden factors reaches."""
        day, p, label = (np.frombuffer(a, t) for a, t in ((self.day, np.uint16), (self.p, np.float32),
                                                           (self.label, np.uint8)))
        bounds = split_days(opts) + (opts.days,)
        return {name: auc(p[(day >= lo) & (day < hi)], label[(day >= lo) & (day < hi)])
                for name, lo, hi in zip(("train", "validation", "test"), bounds, bounds[1:])}


def auc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """ROC AUC from ranks (tied scores share their average rank); None without both classes."""
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based
    rank_sum = average_rank[inverse.ravel()][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def generate_user(u: int, cat: Catalog, opts: GeneratorOptions, rng: np.random.Generator,
                  start: int, truth: ImpressionTruth) -> Iterator[dict]:
    """Events of one user, in time order; each impression's true click probability goes to `truth`."""
    num_cat = len(cat.kinds)
    interest = rng.dirichlet(np.full(num_cat, 0.3))
    taste = Taste(rng.normal(size=STYLE_DIM), rng.choice(len(COLOURS), 2, replace=False),
                  int(rng.integers(len(MATERIALS))))
    activity = rng.gamma(1.5, opts.sessions_per_day / 1.5)
    # decaying clicks per category and per colour: what the sequence reveals
    recent, recent_colour = np.zeros(num_cat), np.zeros(len(COLOURS))
    uid = f"u{u:07d}"
    for day in range(opts.days):
        interest = 0.92 * interest + 0.08 * rng.dirichlet(np.full(num_cat, 0.3))  # drift
        recent *= RECENT_DECAY
        recent_colour *= RECENT_DECAY
        day_events = []
        for s in sorted(rng.integers(0, 86400 - 3600, rng.poisson(activity))):
            t = start + day * 86400 + int(s)
            for r in range(int(rng.integers(1, 4))):
                c = int(rng.choice(num_cat, p=interest)) if rng.random() < 0.8 else int(rng.integers(num_cat))
                pool = cat.released(c, day)
                if len(pool) == 0:
                    continue
                k = min(opts.impressions_per_request, len(pool))
                w = cat.zipf_weight[pool]
                shown = rng.choice(pool, size=k, replace=False, p=w / w.sum())
                positions = np.arange(1, k + 1)
                p = 1 / (1 + np.exp(-click_logit(cat, shown, cat.kinds[c], taste, recent[c], recent_colour,
                                                 positions)))
                clicked = rng.random(k) < p
                truth.add(day, p, clicked)
                request = f"r{u:07d}_{day:03d}_{s:05d}_{r}"
                query = CATEGORY_WORDS[c] if rng.random() < 0.7 else ""  # search vs. feed
                for item, pos, clk in zip(shown, positions, clicked):
                    day_events.append(dict(user_id=uid, item_id=item_id(item), timestamp=t, event_type="impression",
                                           clicked=int(clk), request_id=request, position=int(pos), query=query))
                    if clk:
                        t_click = t + int(rng.integers(2, 60))
                        day_events.append(behaviour_event(uid, item, t_click, "click"))
                        recent[c] += 1.0
                        recent_colour[cat.colour[item]] += 1.0
                        if rng.random() < 0.2:
                            t_cart = t_click + int(rng.integers(60, 600))
                            day_events.append(behaviour_event(uid, item, t_cart, "cart"))
                            if rng.random() < 0.4:
                                day_events.append(behaviour_event(uid, item, t_cart + int(rng.integers(60, 3600)),
                                                             "purchase"))
                t += int(rng.integers(30, 120))
        day_events.sort(key=lambda e: e["timestamp"])
        yield from day_events


def behaviour_event(uid: str, item: int, t: int, kind: str) -> dict:
    return dict(user_id=uid, item_id=item_id(item), timestamp=t, event_type=kind, clicked=None,
                request_id=None, position=None, query=None)


def bad_event(rng: np.random.Generator, good: dict, text_format: bool):
    """A broken variant of an event, one kind of defect at random (text formats may break syntax)."""
    kinds = ["missing_field", "bad_timestamp", "unknown_item", "bad_clicked", "negative_position", "duplicate"]
    if text_format:
        kinds += ["malformed", "bad_utf8"]
    kind = kinds[int(rng.integers(len(kinds)))]
    bad = dict(good)
    if kind == "missing_field":
        bad["user_id"] = None
    elif kind == "bad_timestamp":
        bad["timestamp"] = "yesterday-ish" if text_format else -86_400  # Parquet's int64 column: before 1970
    elif kind == "unknown_item":
        bad["item_id"] = "i_does_not_exist"
    elif kind == "bad_clicked":
        bad["clicked"] = 7
    elif kind == "negative_position":
        bad["position"] = -3
    elif kind in ("malformed", "bad_utf8"):
        return kind  # the writer produces the broken bytes
    return bad


def split_days(opts: GeneratorOptions) -> tuple[int, int, int]:
    """First days of the train, validation and test windows, so the oracle scores the windows the config names."""
    return TRAIN_START_DAY, int(opts.days * 0.7), int(opts.days * 0.85)


def planted() -> dict:
    """The constants of the planted structure, for world.json: what a report can check the model against."""
    return {"cold_share": COLD_SHARE, "image_only_share": IMAGE_ONLY_SHARE, "title_only_share": TITLE_ONLY_SHARE,
            "both_share": round(1 - IMAGE_ONLY_SHARE - TITLE_ONLY_SHARE, 6),
            "title_colour_accuracy": TITLE_COLOUR_ACCURACY, "image_colour_noise": IMAGE_COLOUR_NOISE,
            "image_rms": IMAGE_RMS,
            "click_weights": {k: dict(zip(("style", "colour", "quality", "material"), w))
                              for k, w in CLICK_WEIGHTS.items()},
            "category_interest": CATEGORY_INTEREST, "colour_interest": COLOUR_INTEREST, "recent_decay": RECENT_DECAY,
            "position_penalty": POSITION_PENALTY, "click_bias": CLICK_BIAS}
