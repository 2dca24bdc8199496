"""`marn generate-data`: deterministic, the same data in every format, and the planted structure holds."""
import collections
import gzip
import hashlib
import json
import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from marn_tf.config import Config
from marn_tf.pipelines import records as R
from marn_tf.pipelines import synthetic_world as S
from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

SMALL = dict(users=300, items=1200, days=10, image_dim=8, bad_record_rate=0.0)


def digest(directory: pathlib.Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def read_events(directory: pathlib.Path, fmt: str, config: Config) -> list:
    events = []
    for path in sorted((directory / "events").iterdir()):
        if fmt == "parquet":
            rows = [R.RawRecord(r) for r in pq.read_table(path).to_pylist()]
        else:
            lines = gzip.open(path).read().splitlines()
            header = lines[0].decode().split(",") if fmt == "csv" else None
            rows = [R.RawRecord(line, str(path), header) for line in (lines[1:] if header else lines)]
        events += [R.parse_event(R.parse_raw(r), config) for r in rows]
    return events


@pytest.fixture(scope="module")
def jsonl_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "jsonl"
    generate(GeneratorOptions(output=str(out), **SMALL), progress=False)
    config = Config.load(str(out / "config.yaml"))
    items = {i.item_id: i for i in (R.parse_item(json.loads(line), config)
                                    for line in gzip.open(out / "items" / "items.jsonl.gz"))}
    world = json.loads((out / "world.json").read_text())
    return out, config, read_events(out, "jsonl", config), items, world


@pytest.fixture(scope="module")
def truth(jsonl_data):
    """The hidden catalog of `jsonl_data` (generate builds it first from the seed's stream), checked by its titles."""
    _, _, _, items, _ = jsonl_data
    opts = GeneratorOptions(output="", **SMALL)
    catalog = S.build_catalog(opts, np.random.default_rng(opts.seed))
    assert [items[S.item_id(i)].title for i in range(opts.items)] == catalog.title
    return catalog


def index(item: str) -> int:
    return int(item[1:])


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate(GeneratorOptions(output=str(tmp_path / name), **dict(SMALL, users=20)), progress=False)
    assert digest(tmp_path / "a" / "events") == digest(tmp_path / "b" / "events")
    assert digest(tmp_path / "a" / "items") == digest(tmp_path / "b" / "items")
    oracle = [json.loads((tmp_path / name / "world.json").read_text())["oracle"] for name in ("a", "b")]
    assert oracle[0] == oracle[1]
    generate(GeneratorOptions(output=str(tmp_path / "c"), seed=8, **dict(SMALL, users=20)), progress=False)
    assert digest(tmp_path / "a" / "events") != digest(tmp_path / "c" / "events")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_format_holds_the_same_events(tmp_path, jsonl_data, fmt):
    _, config, events, _, _ = jsonl_data
    generate(GeneratorOptions(output=str(tmp_path), format=fmt, **SMALL), progress=False)
    assert read_events(tmp_path, fmt, config) == events


def test_behaviour_follows_clicks_and_never_precedes_them(jsonl_data):
    _, _, events, _, _ = jsonl_data
    impressions = [e for e in events if e.event_type == "impression"]
    clicks = [e for e in events if e.event_type == "click"]
    assert len(clicks) == sum(e.clicked for e in impressions) > 0
    clicked_at = collections.defaultdict(list)
    for e in impressions:
        if e.clicked:
            clicked_at[(e.user_id, e.item_id)].append(e.timestamp)
    assert all(any(t < c.timestamp for t in clicked_at[(c.user_id, c.item_id)]) for c in clicks)


def test_image_and_title_are_missing_in_complementary_shares(jsonl_data):
    _, _, _, items, world = jsonl_data
    n = len(items)
    image_only = sum(i.image is not None and i.title is None for i in items.values()) / n
    title_only = sum(i.image is None and i.title is not None for i in items.values()) / n
    both = sum(i.image is not None and i.title is not None for i in items.values()) / n
    assert image_only == pytest.approx(S.IMAGE_ONLY_SHARE, abs=0.04)
    assert title_only == pytest.approx(S.TITLE_ONLY_SHARE, abs=0.04)
    assert both == pytest.approx(1 - S.IMAGE_ONLY_SHARE - S.TITLE_ONLY_SHARE, abs=0.04)
    assert world["planted"]["image_only_share"] == S.IMAGE_ONLY_SHARE


def test_a_third_of_items_are_cold_and_never_shown_before_release(jsonl_data, truth):
    _, _, events, _, world = jsonl_data
    assert (truth.release_day > 0).mean() >= 0.30
    assert world["planted"]["cold_share"] >= 0.30
    first_day = min(e.timestamp for e in events) // 86400
    assert all(e.timestamp // 86400 - first_day >= truth.release_day[index(e.item_id)] for e in events
               if e.event_type == "impression")
    shown_late = {e.item_id for e in events if truth.release_day[index(e.item_id)] > 0}
    assert len(shown_late) > 0.2 * len(truth.release_day)


def test_image_vectors_have_the_scale_of_learned_embeddings(jsonl_data):
    _, _, _, items, _ = jsonl_data
    rms = np.array([np.sqrt(np.mean(np.square(i.image))) for i in items.values() if i.image is not None])
    assert 0.1 < rms.min() and rms.max() < 0.2
    assert rms.mean() == pytest.approx(S.IMAGE_RMS, abs=1e-3)


def test_the_title_names_the_true_colour_three_times_in_four(jsonl_data, truth):
    _, _, _, items, _ = jsonl_data
    named = [(set(i.title.split()) & set(S.COLOURS), S.COLOURS[truth.colour[index(i.item_id)]])
             for i in items.values() if i.title is not None]
    assert all(len(words) == 1 for words, _ in named)
    agree = np.mean([colour in words for words, colour in named])
    assert agree == pytest.approx(S.TITLE_COLOUR_ACCURACY, abs=0.04)


def test_image_and_title_together_read_the_colour_better_than_either():
    """Independent noise per modality: where the image's and the title's colour agree, they are nearly always
    right, though each alone is right about 3 times in 4."""
    opts = GeneratorOptions(output="", items=3000)
    catalog = S.build_catalog(opts, np.random.default_rng(1))
    has_title = np.array([t is not None for t in catalog.title])
    features = np.c_[catalog.image, np.ones(opts.items)][catalog.has_image]
    colour = catalog.colour[catalog.has_image]
    decoder = np.linalg.lstsq(features, np.eye(len(S.COLOURS))[colour], rcond=None)[0]
    from_image = (features @ decoder).argmax(axis=1)
    from_title = catalog.title_colour[catalog.has_image]
    both = has_title[catalog.has_image]
    agree = both & (from_image == from_title)
    assert 0.6 < np.mean(from_image == colour) < 0.85
    assert 0.7 < np.mean((from_title == colour)[both]) < 0.8
    assert np.mean((from_image == colour)[agree]) > 0.95 and agree.sum() > 0.4 * both.sum()


def test_colours_clicked_before_are_clicked_more_later_in_every_kind(jsonl_data, truth):
    """The colour matters in every kind: a user's two most clicked colours in the first half of the period
    are clicked more often in the second half than other colours, within the same users."""
    _, _, events, _, world = jsonl_data
    first_day = min(e.timestamp for e in events) // 86400
    half = first_day + SMALL["days"] // 2
    clicked_colours = collections.defaultdict(collections.Counter)
    for e in events:
        if e.event_type == "click" and e.timestamp // 86400 < half:
            clicked_colours[e.user_id][truth.colour[index(e.item_id)]] += 1
    favourites = {u: {c for c, _ in counts.most_common(2)} for u, counts in clicked_colours.items()}
    shown, clicked = collections.Counter(), collections.Counter()
    for e in events:
        if e.event_type == "impression" and e.timestamp // 86400 >= half and e.user_id in favourites:
            i = index(e.item_id)
            key = (truth.kinds[truth.category[i]], truth.colour[i] in favourites[e.user_id])
            shown[key] += 1
            clicked[key] += e.clicked
    for kind in S.KINDS:
        assert shown[(kind, True)] > 200
        assert clicked[(kind, True)] / shown[(kind, True)] > 1.3 * clicked[(kind, False)] / shown[(kind, False)]
    assert set(world["category_kind"].values()) == set(S.KINDS)


def test_the_oracle_auc_of_every_split_window_is_recorded(jsonl_data):
    _, _, _, _, world = jsonl_data
    assert set(world["oracle"]) == {"train", "validation", "test"}
    assert all(0.5 < auc < 1 for auc in world["oracle"].values())


def test_auc_is_the_share_of_correctly_ordered_pairs_with_ties_counting_half():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 200).astype(np.float32), rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert S.auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert S.auc(scores, np.zeros(200)) is None


def ctr_by_popularity(events, items, world, kind):
    """(CTR of the higher-sales half, CTR of the lower half) of the items of categories of `kind`."""
    shown = collections.Counter()
    clicked = collections.Counter()
    for e in events:
        if e.event_type == "impression" and world["category_kind"][items[e.item_id].id_values[2]] == kind:
            shown[e.item_id] += 1
            clicked[e.item_id] += e.clicked
    ranked = sorted(shown, key=lambda i: items[i].statistics[0])
    low, high = ranked[: len(ranked) // 2], ranked[len(ranked) // 2:]
    rate = lambda group: sum(clicked[i] for i in group) / sum(shown[i] for i in group)  # noqa: E731
    return rate(high), rate(low)


def test_statistics_decide_popularity_categories_more_than_visual_ones(jsonl_data):
    _, _, events, items, world = jsonl_data
    high, low = ctr_by_popularity(events, items, world, "popularity")
    v_high, v_low = ctr_by_popularity(events, items, world, "visual")
    assert high / low > 1.5
    assert high / low > 1.3 * (v_high / v_low)


def test_interests_persist_so_sequences_predict_clicks(jsonl_data):
    _, _, events, items, _ = jsonl_data
    last_category, same, total = {}, 0, 0
    for e in sorted(events, key=lambda e: (e.user_id, e.timestamp)):
        if e.event_type != "click":
            continue
        category = items[e.item_id].id_values[2]
        if e.user_id in last_category:
            total += 1
            same += last_category[e.user_id] == category
        last_category[e.user_id] = category
    assert same / total > 5 / 24  # 24 categories: chance would be ~1/24


def test_parquet_holds_broken_events_its_typed_columns_can_store(tmp_path):
    counts = generate(GeneratorOptions(output=str(tmp_path), format="parquet", **dict(SMALL, users=40,
                                                                                      bad_record_rate=0.05)),
                      progress=False)
    config = Config.load(str(tmp_path / "config.yaml"))
    parsed = [R.parse_record(R.RawRecord(row), "events", config)
              for path in sorted((tmp_path / "events").iterdir()) for row in pq.read_table(path).to_pylist()]
    dead = [p for p in parsed if isinstance(p, R.DeadLetter)]
    assert counts["bad_events"] > 0 and len(parsed) == counts["events"] + counts["bad_events"]
    assert {d.reason for d in dead} >= {"bad_timestamp"} and len(dead) <= counts["bad_events"]
