"""`marn generate-data`: deterministic, the same data in every format, and the planted structure holds."""
import collections
import gzip
import hashlib
import json
import pathlib

import pyarrow.parquet as pq
import pytest

from marn_tf.config import Config
from pipelines import records as R
from pipelines.synthetic_data import GeneratorOptions, generate

SMALL = dict(users=150, items=600, days=10, image_dim=8, bad_record_rate=0.0)


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


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate(GeneratorOptions(output=str(tmp_path / name), **dict(SMALL, users=20)), progress=False)
    assert digest(tmp_path / "a" / "events") == digest(tmp_path / "b" / "events")
    assert digest(tmp_path / "a" / "items") == digest(tmp_path / "b" / "items")
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


def test_catalog_has_missing_content_and_cold_items(jsonl_data):
    _, config, events, items, _ = jsonl_data
    n = len(items)
    assert 0.05 < sum(i.image is None for i in items.values()) / n < 0.15
    assert 0.05 < sum(i.title is None for i in items.values()) / n < 0.15
    first_day = min(e.timestamp for e in events) // 86400
    shown_first_day = {e.item_id for e in events if e.timestamp // 86400 == first_day}
    shown_later = {e.item_id for e in events} - shown_first_day
    assert len(shown_later) > 0.05 * n  # items released during the period


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
