"""Ownership on an object store (gs://, s3://, ...: here an in-memory Beam file system): the same marker,
refusals and guarded removal as on local disk (tests/test_no_data_loss.py), without the lock."""
import json

import pytest

from marn_tf.storage import files, ownership
from marn_tf.storage.errors import OwnershipError


def test_a_remote_run_directory_is_claimed_with_its_marker_first(store):
    run = f"{store}/runs/a"
    with ownership.owned_directory(run, ownership.RUN, "marn run") as marker:
        assert files.entries(run) == [ownership.MARKER]  # no lock on an object store
        files.write_text(f"{run}/summary.json", "{}")
    assert json.loads(files.read_text(f"{run}/{ownership.MARKER}")) == marker
    with ownership.owned_directory(run, ownership.RUN, "marn run") as again:
        assert again["run_id"] == marker["run_id"]  # its own directory: kept, resumed


def test_a_remote_directory_it_did_not_write_is_refused_and_left_alone(store):
    files.write_text(f"{store}/theirs/model.pb", "theirs")
    with pytest.raises(OwnershipError, match=r"is not empty \(model.pb\) and has no .marn-owner.json"):
        with ownership.owned_directory(f"{store}/theirs", ownership.RUN, "marn run"):
            pass
    ownership.claim(f"{store}/runs/a", ownership.RUN, "marn run")
    with pytest.raises(OwnershipError, match="holds the output of `marn run`"):
        ownership.claim(f"{store}/runs/a", ownership.PREPROCESS, "marn preprocess")
    assert files.entries(f"{store}/theirs") == ["model.pb"]


def test_remote_removal_stays_inside_the_marked_directory(store):
    owned = f"{store}/owned"
    ownership.claim(owned, ownership.PREPROCESS, "marn preprocess")
    for name in ("train/part-0", "train/part-1", "vocab/items.txt"):
        files.write_text(f"{owned}/{name}", "x")
    files.write_text(f"{store}/owned-too/keep", "x")  # a longer name with the same prefix
    for path in (f"{store}/owned-too", owned, f"{owned}/{ownership.MARKER}", "/tmp/owned/train"):
        with pytest.raises(OwnershipError):
            ownership.remove(path, owned)
    assert ownership.remove(f"{owned}/train", owned) and not ownership.remove(f"{owned}/train", owned)
    assert files.entries(owned) == [ownership.MARKER, "vocab"]
    files.write_text(f"{owned}/notes.txt", "mine")
    with pytest.raises(OwnershipError, match="holds notes.txt, which `marn preprocess` does not write"):
        ownership.clear(owned, ["train", "vocab"], "marn preprocess")
    assert files.entries(owned) == [ownership.MARKER, "notes.txt", "vocab"]  # nothing deleted
    assert files.read_text(f"{store}/owned-too/keep") == "x"


def test_a_remote_input_inside_what_is_written_is_refused(store):
    with pytest.raises(OwnershipError, match="inside"):
        ownership.check_inputs_outside([("events", f"{store}/out/raw/part-*")], [f"{store}/out"], "marn run")
    ownership.check_inputs_outside([("events", f"{store}/raw/part-*")], [f"{store}/out"], "marn run")
