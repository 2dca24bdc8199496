"""`marn generate-data --world realistic`: heavy tails, cold users and items, weak and missing content, and a click
model whose signal is collaborative (the item's hidden factor against the user's taste)."""
import collections
import gzip
import json

import numpy as np
import pytest

from marn_tf.config import Config
from marn_tf.pipelines import realistic_world as W
from marn_tf.pipelines import records as R
from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate
from marn_tf.pipelines.synthetic_world import ImpressionTruth
from tests.pipelines.test_synthetic_data import read_events

SMALL = dict(users=600, items=1500, days=14, image_dim=8, bad_record_rate=0.0, world="realistic")


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic") / "jsonl"
    generate(GeneratorOptions(output=str(out), **SMALL), progress=False)
    config = Config.load(str(out / "config.yaml"))
    items = [json.loads(line) for line in gzip.open(out / "items" / "items.jsonl.gz")]
    world = json.loads((out / "world.json").read_text())
    return out, config, read_events(out, "jsonl", config), items, world


def test_most_users_are_light_and_a_few_are_heavy(realistic):
    _, _, events, _, _ = realistic
    per_user = np.array(sorted(collections.Counter(e.user_id for e in events if e.event_type == "impression")
                               .values()))
    assert np.median(per_user) < 0.5 * per_user.mean()  # a long tail of heavy users lifts the mean
    assert per_user[-len(per_user) // 10:].sum() > 0.4 * per_user.sum()  # the top tenth see 40% of impressions


def test_many_users_and_items_are_first_seen_after_the_training_window(realistic):
    _, config, events, _, _ = realistic
    train_end = R.timestamp_seconds(config.split.train_end, "train_end")
    impressions = [e for e in events if e.event_type == "impression"]
    seen_users = {e.user_id for e in impressions if e.timestamp < train_end}
    seen_items = {e.item_id for e in impressions if e.timestamp < train_end}
    later = [e for e in impressions if e.timestamp >= train_end]
    assert np.mean([e.user_id not in seen_users for e in later]) > 0.05
    assert np.mean([e.item_id not in seen_items for e in later]) > 0.05


def test_item_exposure_is_heavy_tailed(realistic):
    _, _, events, items, _ = realistic
    shown = collections.Counter(e.item_id for e in events if e.event_type == "impression")
    counts = np.array(sorted(shown.values(), reverse=True))
    assert counts[:len(items) // 100].sum() > 0.2 * counts.sum()  # the top 1% of the catalog: a fifth of impressions


def test_content_is_sparse_and_the_category_coarse(realistic):
    _, _, _, items, world = realistic
    assert abs(np.mean([i["image_embedding"] is None for i in items]) - (1 - W.IMAGE_SHARE)) < 0.05
    assert abs(np.mean([i["sales_count"] is None for i in items]) - (1 - W.STATISTICS_SHARE)) < 0.05
    assert len({i["category_id"] for i in items}) == len(W.CATEGORY_WORDS)
    assert np.mean([len(i["title"].split()) for i in items]) < 4
    assert "category_kind" not in world and world["planted"]["world"] == "realistic"


def test_the_oracle_leaves_room_above_a_popularity_model(realistic):
    *_, world = realistic
    assert 0.75 < world["oracle"]["test"] < 0.9  # clicks the features cannot explain keep it well below 1


def test_users_click_items_whose_factor_matches_their_recent_clicks():
    """What the behaviour sequence shows: the next click's factor agrees with the mean of the user's earlier ones
    more than a random shown item's does."""
    opts = GeneratorOptions(output="", **SMALL)
    rng = np.random.default_rng(opts.seed)
    catalog = W.build_catalog(opts, rng)
    truth = ImpressionTruth()
    clicked_agreement, shown_agreement = [], []
    for u in range(200):
        history = []
        for event in W.generate_user(u, catalog, opts, np.random.default_rng([opts.seed, u]), 0, truth):
            if event["event_type"] != "impression":
                continue
            item = int(event["item_id"][1:])
            if history:
                agreement = float(catalog.style[item] @ np.mean(history[-5:], axis=0))
                (clicked_agreement if event["clicked"] else shown_agreement).append(agreement)
            if event["clicked"]:
                history.append(catalog.style[item])
    assert np.mean(clicked_agreement) > np.mean(shown_agreement) + 0.3


def test_a_catalog_smaller_than_a_request_still_generates(tmp_path):
    counts = generate(GeneratorOptions(output=str(tmp_path / "tiny"), **{**SMALL, "users": 20, "items": 6}),
                      progress=False)
    assert counts["impressions"] > 0


@pytest.mark.parametrize("flag,value", [("--users", "0"), ("--items", "-5"), ("--days", "4"), ("--shards", "0"),
                                        ("--bad-record-rate", "1.5"), ("--image-dim", "many")])
def test_a_count_out_of_range_is_a_usage_error_naming_the_flag(tmp_path, capsys, flag, value):
    from marn_tf import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["generate-data", "--output", str(tmp_path / "out"), flag, value])
    assert stopped.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
