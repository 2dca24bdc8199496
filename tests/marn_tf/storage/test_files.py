"""The file-access layer on local paths and on an object store (an in-memory Beam file system)."""
import builtins
import os
import stat

import pytest
from apache_beam.io.filesystem import BeamIOError

from marn_tf.storage import files
from tests.marn_tf.storage import memory_filesystem


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
    assert files.read_bytes(files.join(root, "plot.png")) == b"\x89PNG\xff"
    with pytest.raises(files.StorageError, match="plot.png: it is not UTF-8 text"):  # there, so not "missing"
        files.read_text(files.join(root, "plot.png"))
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


# ------------------------------------------------------------------------------- an error is not "missing"

def fail_reading(monkeypatch, root, path, filesystem=memory_filesystem.MemoryFileSystem):
    """Reading `path` fails as a denied permission (local) or a service error (object store `filesystem`) would."""
    if files.is_remote(root):
        def open_object(fs, name, *args, **kwargs):
            if name == path:
                raise BeamIOError(f"503 Service Unavailable reading {name}")
            return real_open(fs, name, *args, **kwargs)

        real_open = filesystem.open
        monkeypatch.setattr(filesystem, "open", open_object)
    else:
        def open_file(name, *args, **kwargs):
            if name == path:
                raise PermissionError(13, "Permission denied", name)
            return builtins.open(name, *args, **kwargs)

        monkeypatch.setattr(files, "open", open_file, raising=False)


def fail_listing(monkeypatch, prefix):
    """Listing anything under `prefix` on the object store fails, as a network or permission error would."""
    def list_objects(fs, dir_or_prefix):
        if dir_or_prefix.startswith(prefix):
            raise BeamIOError("List operation failed", {dir_or_prefix: PermissionError("403 Forbidden")})
        return real_list(fs, dir_or_prefix)

    real_list = memory_filesystem.MemoryFileSystem._list
    monkeypatch.setattr(memory_filesystem.MemoryFileSystem, "_list", list_objects)


def test_a_file_that_exists_but_cannot_be_read_raises_naming_it(root, monkeypatch):
    """Only a path that does not exist reads as None; a failed read raises `StorageError` with the path."""
    path = files.join(root, "stages", "train.json")
    files.write_text(path, "{}")
    fail_reading(monkeypatch, root, path)
    with pytest.raises(files.StorageError, match=f"cannot read {path}: "):
        files.read_bytes(path)
    with pytest.raises(files.StorageError, match=f"cannot read {path}: "):
        files.read_text(path)
    assert files.read_text(files.join(root, "stages", "missing.json")) is None


def test_a_directory_read_as_a_file_is_an_error_not_a_missing_file(tmp_path):
    """A real OS error other than "no such file" (here: reading a directory) raises, naming the path."""
    (tmp_path / "record.json").mkdir()
    with pytest.raises(files.StorageError, match=f"cannot read {tmp_path / 'record.json'}: Is a directory"):
        files.read_text(str(tmp_path / "record.json"))
    assert files.read_text(str(tmp_path / "record.json" / "inside")) is None  # no such path: missing


def test_a_failed_listing_raises_instead_of_reading_as_empty(store, monkeypatch):
    """A listing that fails is not an empty prefix: `list_tree`, `entries` and `exists` raise with the path."""
    files.write_text(f"{store}/models/marn/1/saved_model.pb", "served")
    fail_listing(monkeypatch, f"{store}/models")
    for call in (files.list_tree, files.entries, files.exists):
        with pytest.raises(files.StorageError, match=f"cannot list {store}/models/marn: .*403 Forbidden"):
            call(f"{store}/models/marn")
    assert files.list_tree(f"{store}/other") == [] and not files.exists(f"{store}/other")  # nothing there


def test_a_local_path_that_cannot_be_checked_is_not_reported_missing(tmp_path, monkeypatch):
    """`exists` and `entries` raise, naming the path, when the file system cannot tell (not "no such file")."""
    hidden = str(tmp_path / "locked" / "run")
    real_lstat, real_listdir = os.lstat, os.listdir

    def denied(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(hidden):
                raise PermissionError(13, "Permission denied", path)
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "lstat", denied(real_lstat))
    monkeypatch.setattr(os, "listdir", denied(real_listdir))
    with pytest.raises(files.StorageError, match=f"cannot check whether {hidden} exists: Permission denied"):
        files.exists(hidden)
    with pytest.raises(files.StorageError, match=f"cannot list {hidden}: Permission denied"):
        files.entries(hidden)
    assert not files.exists(str(tmp_path / "none")) and files.entries(str(tmp_path / "none")) == []


def test_a_failed_listing_does_not_let_an_export_write_over_a_served_version(store, monkeypatch):
    """With the model directory unlistable, `marn export` cannot tell which versions exist: it stops before
    choosing one, and the served version is left as it was."""
    from marn_tf.export import saved_model

    served = f"{store}/models/marn/1/saved_model.pb"
    files.write_text(served, "served")
    fail_listing(monkeypatch, f"{store}/models")
    with pytest.raises(files.StorageError, match=f"cannot list {store}/models/marn"):
        saved_model.export_model(f"{store}/runs/a", f"{store}/data", f"{store}/models")
    assert memory_filesystem.OBJECTS == {served: b"served"}


def test_a_remote_move_never_copies_over_existing_objects(store):
    """`move_tree` onto an object store prefix that already has objects copies nothing and deletes nothing."""
    files.write_text(f"{store}/m/.staging-1/saved_model.pb", "new")
    files.write_text(f"{store}/m/1/saved_model.pb", "served")
    with pytest.raises(FileExistsError, match="already has files"):
        files.move_tree(f"{store}/m/.staging-1", f"{store}/m/1")
    assert files.read_text(f"{store}/m/1/saved_model.pb") == "served"
    assert files.read_text(f"{store}/m/.staging-1/saved_model.pb") == "new"


def test_appending_to_an_object_whose_read_fails_keeps_its_history(store, monkeypatch):
    """On an object store append is read + rewrite: a failed read raises and the object is not rewritten."""
    log = f"{store}/run/history.jsonl"
    files.append_text(log, '{"epoch": 1}\n')
    fail_reading(monkeypatch, store, log)
    with pytest.raises(files.StorageError, match=f"cannot read {log}"):
        files.append_text(log, '{"epoch": 2}\n')
    assert memory_filesystem.OBJECTS[log] == b'{"epoch": 1}\n'


def test_concurrent_writes_of_one_file_each_rename_their_own_complete_copy(tmp_path, monkeypatch):
    """Two writes of one path in one process (threads, a nested call) never share a temporary file: each
    rename moves that call's own bytes, and nothing is left beside the file."""
    path = str(tmp_path / "summary.json")
    real_replace, nested = os.replace, []

    def replace(source, target):
        if not nested:  # a second writer starts between the first one's write and its rename
            nested.append(source)
            files.write_bytes(path, b"second")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    files.write_bytes(path, b"first")
    assert open(path, "rb").read() == b"first" and os.listdir(tmp_path) == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    """A write that fails before its rename keeps the previous content and removes its temporary file."""
    path = str(tmp_path / "summary.json")
    files.write_bytes(path, b"old")

    def replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        files.write_bytes(path, b"new")
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["summary.json"]


def test_a_write_is_on_disk_before_its_rename_and_the_rename_after(tmp_path, monkeypatch):
    """The file's bytes are fsynced before it is renamed into place, and its directory after the rename."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else ("file", os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda source, target: (events.append("rename"), real_replace(source, target)))
    files.write_bytes(str(tmp_path / "a" / "state.json"), b"12345")
    assert events == [("file", 5), "rename", "directory"]


def test_a_read_error_reaches_the_user_as_one_error_line(tmp_path, capsys):
    """A config that exists but cannot be read is reported as that, with its path, not as "not found"."""
    from marn_tf import cli

    (tmp_path / "config.yaml").mkdir()
    code = cli.main(["preprocess", "--config", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    path = tmp_path / "config.yaml"
    assert code == 2 and err == f"error: config file {path} cannot be read: cannot read {path}: Is a directory\n"
    assert not (tmp_path / "out").exists()
