"""The file-access layer on local paths and on an object store (an in-memory Beam file system)."""
import pytest

from marn_tf.storage import files


@pytest.fixture(params=["local", "object store"])
def root(request, tmp_path, store):
    return str(tmp_path) if request.param == "local" else store


def test_write_read_list_and_delete_a_tree(root):
    out = files.join(root, "out")
    assert not files.exists(out) and files.entries(out) == [] and files.read_text(files.join(out, "a")) is None
    files.makedirs(files.join(out, "sub"))
    files.write_text(files.join(out, "a.json"), "{}\n")
    files.write_text(files.join(files.join(out, "sub"), "b.txt"), "b")
    assert files.exists(out) and files.exists(files.join(out, "a.json"))
    assert files.entries(out) == ["a.json", "sub"]
    assert files.read_text(files.join(out, "a.json")) == "{}\n"
    files.delete(files.join(out, "sub"))
    assert files.entries(out) == ["a.json"]
    files.write_text(files.join(out, "a.json"), "replaced")  # overwrites whole
    assert files.read_text(files.join(out, "a.json")) == "replaced"
    files.delete(out)
    assert not files.exists(out) and files.entries(root) == []


def test_append_bytes_and_move_a_tree(root, monkeypatch):
    log = files.join(root, "history.jsonl")
    files.append_text(log, "1\n")
    files.append_text(log, "2\n")
    assert files.read_text(log) == "1\n2\n"
    files.write_bytes(files.join(root, "plot.png"), b"\x89PNG\xff")
    assert files.read_bytes(files.join(root, "plot.png")) == b"\x89PNG\xff" and files.read_text(
        files.join(root, "plot.png")) is None  # not UTF-8
    staging, final = files.join(root, ".staging-1"), files.join(root, "1")
    for name in ("saved_model.pb", "variables/variables.index", "assets/schema.json"):
        files.write_text(files.join(staging, name), name)
    if files.is_remote(root):  # copied object by object: the file a server polls for comes last
        from apache_beam.io.filesystems import FileSystems

        copied, copy = [], FileSystems.copy
        monkeypatch.setattr(FileSystems, "copy", lambda sources, targets: (copied.extend(targets),
                                                                             copy(sources, targets)))
    files.move_tree(staging, final, last=("saved_model.pb",))
    assert not files.exists(staging) and files.read_text(files.join(final, "variables/variables.index")) == \
        "variables/variables.index" and sorted(files.entries(final)) == ["assets", "saved_model.pb", "variables"]
    if files.is_remote(root):
        assert len(copied) == 3 and copied[-1].endswith("/saved_model.pb")
        with pytest.raises(FileNotFoundError, match="nothing to move"):
            files.move_tree(staging, files.join(root, "2"))


def test_an_object_store_prefix_is_not_confused_with_a_longer_name(store):
    files.write_text(f"{store}/run-2/x", "x")
    assert not files.exists(f"{store}/run") and files.entries(f"{store}/run") == []
    assert files.entries(store) == ["run-2"]


@pytest.mark.parametrize("path, parent, inside", [
    ("/a/b", "/a", True), ("/a", "/a", True), ("/ab", "/a", False),
    ("gs://b/x/y", "gs://b/x", True), ("gs://b/xy", "gs://b/x", False),
])
def test_is_under_compares_whole_components(path, parent, inside):
    assert files.is_under(files.normal_path(path), files.normal_path(parent)) is inside


@pytest.mark.parametrize("pattern, base", [
    ("/data/events/part-*", "/data/events"), ("/data/items.jsonl", "/data/items.jsonl"),
    ("gs://b/raw/*/part-?", "gs://b/raw"), ("part-*", "."),
])
def test_glob_base_is_the_directory_a_glob_reads(pattern, base):
    assert files.glob_base(pattern) == base
