"""xlref.datasets (notebook 05): the shipped corpora load and match their digests, every damaged or
missing file is a clear error, `data_dir` / `XLREF_DATA` add corpora, `download` checks before it
writes and never hangs (local servers only: no test touches the network), a wheel carries the
corpora (tests/test_project.py), and a copy of the repository with nothing beside it passes the
data-reading tests and notebooks."""
import dataclasses
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xlref.datasets as D
from _net import SilentServer, returns_within
from xlref.datasets import CORPORA, ChecksumError, download, file_digest, info, load, path

SHAKESPEARE = (D._SHIPPED / "tinyshakespeare" / "input.txt").read_bytes()


@pytest.fixture(autouse=True)
def _no_user_data_folder(monkeypatch):
    "A developer's own XLREF_DATA must not change what these tests see."
    monkeypatch.delenv("XLREF_DATA", raising=False)


# ---------------------------------------------------------------- the shipped corpora

def test_shipped_corpora_are_in_the_package_and_match_their_digests():
    shipped = [c for c in CORPORA.values() if c.shipped]
    assert [c.name for c in shipped] == ["tiny_shakespeare", "wikitext2_valid", "wikitext2_test"]
    for c in shipped:
        p = path(c.name)
        assert p == D._SHIPPED / c.file and p.parent.parent == Path(D.__file__).parent / "corpora"
        assert file_digest(p.read_bytes(), c.digest[0]) == c.digest[1]
        assert (p.parent / "README.md").is_file()                 # the licence and attribution beside the file
    assert hashlib.sha256(SHAKESPEARE).hexdigest() == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert len(load("tiny_shakespeare")) == 1_115_394
    assert load("wikitext2_valid").count("\n") == 3760 and load("wikitext2_test").count("\n") == 4358


def test_licences_ship_beside_the_data():
    wiki = (D._SHIPPED / "wikitext-2" / "README.md").read_text()
    assert "Creative Commons Attribution-ShareAlike" in wiki and "Merity" in wiki
    assert "public domain" in (D._SHIPPED / "tinyshakespeare" / "README.md").read_text()


def test_the_standard_split_of_tiny_shakespeare():
    text = load("tiny_shakespeare")
    train, val = load("tiny_shakespeare", split="train"), load("tiny_shakespeare", split="val")
    assert train + val == text and (len(train), len(val)) == (1_003_854, 111_540)   # nanoGPT's int(0.9 * n)
    assert set(val) <= set(train)


def test_registry_entries_are_consistent():
    for c in CORPORA.values():
        assert (c.digest is None) != (c.n_lines is None), c.name          # exactly one check per file
        assert (c.member is None) == (c.archive_sha256 is None), c.name
        assert c.shipped <= (c.digest is not None), c.name                 # shipped files have exact digests
        assert c.url.startswith("https://") and c.licence and c.source, c.name
        assert not Path(c.file).is_absolute() and ".." not in Path(c.file).parts, c.name


# ---------------------------------------------------------------- errors of the caller

@pytest.mark.parametrize("name", [None, 3, b"tiny_shakespeare", Path("tiny_shakespeare")])
def test_a_name_must_be_a_string(name):
    with pytest.raises(TypeError, match="a corpus name is a str"):
        info(name)


@pytest.mark.parametrize("name", ["", "tinyshakespeare", "wikitext-2", "WikiText2_valid", "wikitext103"])
def test_unknown_names_are_refused_with_the_known_ones(name):
    with pytest.raises(ValueError, match="unknown corpus.*known: tiny_shakespeare"):
        load(name)


@pytest.mark.parametrize("split", ["test", "validation", "Train", 0.9, True])
def test_unknown_splits_are_refused(split):
    with pytest.raises(ValueError, match="split must be 'train', 'val' or None"):
        load("tiny_shakespeare", split=split)


def test_wikitext_files_have_no_split():
    with pytest.raises(ValueError, match="no standard split.*tiny_shakespeare has 'train' and 'val'"):
        load("wikitext2_valid", split="train")


def test_unknown_digest_kind():
    with pytest.raises(ValueError, match="unknown digest kind"):
        file_digest(b"", "md5")


def test_git_blob_digest_is_gits_object_id(tmp_path):
    assert file_digest(b"hello\n", "git-blob-sha1") == "ce013625030ba8dba906f756967f9e9ca394464a"
    if shutil.which("git"):
        f = tmp_path / "f"
        f.write_bytes(SHAKESPEARE[:5000])
        out = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
        assert file_digest(SHAKESPEARE[:5000], "git-blob-sha1") == out


# ---------------------------------------------------------------- damaged and missing files

@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    "A copy of the package's corpora folder that the tests may damage, in place of the real one."
    copy = tmp_path / "corpora"
    shutil.copytree(D._SHIPPED, copy)
    monkeypatch.setattr(D, "_SHIPPED", copy)
    return copy


@pytest.mark.parametrize("damage", ["truncate", "one byte", "crlf", "empty"])
def test_a_damaged_shipped_file_names_the_file_and_both_digests(shipped_copy, damage):
    f = shipped_copy / "tinyshakespeare" / "input.txt"
    data = {"truncate": SHAKESPEARE[:-100], "one byte": SHAKESPEARE.replace(b"ROMEO", b"ROMEE", 1),
            "crlf": SHAKESPEARE.replace(b"\n", b"\r\n"), "empty": b""}[damage]
    f.write_bytes(data)
    for read in (lambda: load("tiny_shakespeare"), lambda: path("tiny_shakespeare")):
        with pytest.raises(ChecksumError) as e:
            read()
        message = str(e.value)
        assert str(f) in message and CORPORA["tiny_shakespeare"].digest[1] in message
        assert hashlib.sha256(data).hexdigest() in message and "Reinstall xlref" in message
    assert isinstance(e.value, ValueError)


@given(position=st.integers(0, len(SHAKESPEARE) - 1), value=st.integers(0, 255))
def test_any_changed_byte_is_refused(position, value):
    if SHAKESPEARE[position] == value:
        return
    damaged = SHAKESPEARE[:position] + bytes([value]) + SHAKESPEARE[position + 1:]
    with pytest.raises(ChecksumError):
        D._check(CORPORA["tiny_shakespeare"], Path("input.txt"), damaged, fix="")


def test_a_missing_shipped_file_says_to_reinstall(shipped_copy):
    (shipped_copy / "wikitext-2" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="corpus 'wikitext2_test' not found.*reinstall xlref"):
        load("wikitext2_test")


def test_a_corpus_that_is_not_shipped_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv("XLREF_DATA", raising=False)
    for name in ["wikitext2_train", "wikitext103_train", "wikitext103_valid", "wikitext103_test"]:
        with pytest.raises(FileNotFoundError, match=rf"download\('{name}', folder\).*XLREF_DATA"):
            load(name)


def _stand_in(folder, name, lines):
    "A file with the registered name and `lines` lines (not the real text: enough for the line-count check)."
    f = folder / CORPORA[name].file
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b" = a line = \n" * lines)
    return f


def test_data_dir_and_xlref_data_add_corpora(tmp_path, monkeypatch):
    monkeypatch.delenv("XLREF_DATA", raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    fa, fb = _stand_in(a, "wikitext103_valid", 3760), _stand_in(b, "wikitext103_valid", 3760)
    assert path("wikitext103_valid", data_dir=a) == fa and path("wikitext103_valid", data_dir=str(b)) == fb
    monkeypatch.setenv("XLREF_DATA", str(a))
    assert path("wikitext103_valid") == fa
    assert path("wikitext103_valid", data_dir=b) == fb                      # the argument wins over the variable
    assert path("tiny_shakespeare") == D._SHIPPED / "tinyshakespeare" / "input.txt"   # not in a: the package's
    assert load("wikitext103_valid") == " = a line = \n" * 3760
    monkeypatch.setenv("XLREF_DATA", "")                                    # empty means unset
    with pytest.raises(FileNotFoundError, match="not found"):
        path("wikitext103_valid")


@pytest.mark.parametrize("lines", [0, 3759, 3761])
def test_a_wrong_line_count_is_refused(tmp_path, lines):
    f = _stand_in(tmp_path, "wikitext103_valid", lines)
    with pytest.raises(ChecksumError, match=rf"{f}.* {lines:,} lines, expected 3,760.*download\('wikitext103_valid'"):
        load("wikitext103_valid", data_dir=tmp_path)


def test_a_copy_of_a_shipped_corpus_in_the_folder_is_used_and_checked(tmp_path):
    f = tmp_path / "tinyshakespeare" / "input.txt"
    f.parent.mkdir()
    f.write_bytes(SHAKESPEARE)
    assert path("tiny_shakespeare", data_dir=tmp_path) == f
    f.write_bytes(SHAKESPEARE[:-1])
    with pytest.raises(ChecksumError, match="data_dir"):
        load("tiny_shakespeare", data_dir=tmp_path)


@pytest.mark.parametrize("where", ["data_dir", "XLREF_DATA"])
def test_a_folder_that_does_not_exist_is_an_error_naming_it(tmp_path, monkeypatch, where):
    missing = tmp_path / "nowhere"
    (tmp_path / "file").write_text("x")
    for bad in (missing, tmp_path / "file"):
        if where == "data_dir":
            call = lambda: load("tiny_shakespeare", data_dir=bad)
        else:
            monkeypatch.setenv("XLREF_DATA", str(bad))
            call = lambda: load("tiny_shakespeare")
        with pytest.raises(FileNotFoundError, match=rf"{where}=.*is not a directory"):
            call()


def test_a_fifo_or_a_folder_in_place_of_a_corpus_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / CORPORA["wikitext103_test"].file
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        returns_within(5, lambda: load("wikitext103_test", data_dir=tmp_path))
    (tmp_path / CORPORA["wikitext103_valid"].file).mkdir()
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        path("wikitext103_valid", data_dir=tmp_path)


# ---------------------------------------------------------------- download, against local servers

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    "An HTTP server on 127.0.0.1 serving tmp_path/'www'; yields (folder, base url)."
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_writes_the_checked_file_where_load_finds_it(server, tmp_path):
    www, base = server
    (www / "input.txt").write_bytes(SHAKESPEARE)
    dest = tmp_path / "data"
    got = download("tiny_shakespeare", dest, url=f"{base}/input.txt", timeout=5)
    assert got == dest / "tinyshakespeare" / "input.txt" and got.read_bytes() == SHAKESPEARE
    assert _files(dest) == ["tinyshakespeare/input.txt"]                  # no temporary left behind
    assert load("tiny_shakespeare", data_dir=dest) == SHAKESPEARE.decode()
    (www / "input.txt").unlink()                                          # an intact file is not fetched again
    assert download("tiny_shakespeare", dest, url=f"{base}/input.txt", timeout=5) == got
    with pytest.raises(ConnectionError, match="HTTP 404"):                # force fetches, and the old file survives
        download("tiny_shakespeare", dest, url=f"{base}/input.txt", timeout=5, force=True)
    assert got.read_bytes() == SHAKESPEARE and _files(dest) == ["tinyshakespeare/input.txt"]


def test_download_replaces_a_damaged_copy(server, tmp_path):
    www, base = server
    (www / "input.txt").write_bytes(SHAKESPEARE)
    target = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(SHAKESPEARE[:1000])
    assert download("tiny_shakespeare", tmp_path / "data", url=f"{base}/input.txt", timeout=5).read_bytes() == SHAKESPEARE


@pytest.mark.parametrize("served", ["half", "other", "empty"])
def test_a_wrong_download_is_refused_and_nothing_is_written(server, tmp_path, served):
    www, base = server
    (www / "input.txt").write_bytes({"half": SHAKESPEARE[: len(SHAKESPEARE) // 2], "other": b"<html>moved</html>",
                                     "empty": b""}[served])
    dest = tmp_path / "data"
    with pytest.raises(ChecksumError, match="expected 86c4e6aa.*nothing was written"):
        download("tiny_shakespeare", dest, url=f"{base}/input.txt", timeout=5)
    assert _files(dest) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(server, tmp_path, monkeypatch):
    www, base = server
    (www / "input.txt").write_bytes(SHAKESPEARE)
    dest = tmp_path / "data"
    target = dest / "tinyshakespeare" / "input.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(D.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        download("tiny_shakespeare", dest, url=f"{base}/input.txt", timeout=5)
    assert target.read_bytes() == b"old" and _files(dest) == ["tinyshakespeare/input.txt"]


def test_a_server_that_never_answers_gives_a_clear_error_in_bounded_time(tmp_path):
    with SilentServer() as silent:
        start = time.perf_counter()
        with pytest.raises(ConnectionError, match=r"could not download tiny_shakespeare .*timeout 0.5 s.*XLREF_DATA"):
            returns_within(20, lambda: download("tiny_shakespeare", tmp_path / "d", url=f"{silent.url}/f", timeout=0.5))
        assert time.perf_counter() - start < 10 and silent.accepted >= 1
    assert _files(tmp_path / "d") == []


def test_a_server_that_stops_mid_transfer_gives_a_clear_error(tmp_path):
    "Content-Length promises the whole file, half arrives, then the connection closes."
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_half():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(SHAKESPEARE) + SHAKESPEARE[:50_000])
        conn.close()
    threading.Thread(target=serve_half, daemon=True).start()
    try:
        with pytest.raises(ConnectionError, match="could not download"):
            returns_within(20, lambda: download("tiny_shakespeare", tmp_path / "d",
                                                 url=f"http://127.0.0.1:{listener.getsockname()[1]}/f", timeout=5))
    finally:
        listener.close()
    assert _files(tmp_path / "d") == []


def test_a_closed_port_is_a_connection_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                                             # nothing listens there now
    with pytest.raises(ConnectionError, match="could not download"):
        returns_within(20, lambda: download("wikitext2_train", tmp_path, url=f"http://127.0.0.1:{port}/t", timeout=2))


@pytest.mark.parametrize("bad", [dict(timeout=0), dict(timeout=-1), dict(timeout=True), dict(timeout="5"),
                                 dict(url="ftp://example.org/f"), dict(url="example.org/f"), dict(url=3)])
def test_download_refuses_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError, match="timeout must be|url must be"):
        download("tiny_shakespeare", tmp_path, **bad)


def test_download_refuses_a_file_as_destination(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        download("tiny_shakespeare", tmp_path / "f")


# ---------------------------------------------------------------- download of an archive (WikiText-103's layout)

def _archive(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def small_wikitext103(monkeypatch):
    "Make the registry's WikiText-103 entries describe a small archive built here; returns a function building it."
    def build(lines=(5, 2, 3), extra=None):
        members = {CORPORA[f"wikitext103_{s}"].member: b" = a = \n" * n for s, n in zip(["train", "valid", "test"], lines)}
        members.update(extra or {})
        return _archive(members)
    reference = build()
    for split, n in zip(["train", "valid", "test"], (5, 2, 3)):
        name = f"wikitext103_{split}"
        monkeypatch.setitem(CORPORA, name, dataclasses.replace(CORPORA[name], n_lines=n,
                                                                archive_sha256=hashlib.sha256(reference).hexdigest()))
    return build


def test_one_archive_download_yields_all_three_splits(server, tmp_path, small_wikitext103):
    www, base = server
    (www / "wt103.zip").write_bytes(small_wikitext103())
    dest = tmp_path / "data"
    got = download("wikitext103_valid", dest, url=f"{base}/wt103.zip", timeout=5)
    assert got == dest / "wikitext-103" / "wiki.valid.tokens"
    assert _files(dest) == ["wikitext-103/wiki.test.tokens", "wikitext-103/wiki.train.tokens", "wikitext-103/wiki.valid.tokens"]
    assert [load(f"wikitext103_{s}", data_dir=dest).count("\n") for s in ["train", "valid", "test"]] == [5, 2, 3]


def test_an_archive_with_another_digest_writes_nothing(server, tmp_path, small_wikitext103):
    www, base = server
    (www / "wt103.zip").write_bytes(small_wikitext103(lines=(5, 2, 4)))
    with pytest.raises(ChecksumError, match="the archive from .* has sha256"):
        download("wikitext103_train", tmp_path / "data", url=f"{base}/wt103.zip", timeout=5)
    assert _files(tmp_path / "data") == []


def test_archive_member_names_never_choose_where_files_go(server, tmp_path, small_wikitext103, monkeypatch):
    "A zip that also holds '../../escape' writes only the registry's three files, inside dest."
    www, base = server
    crafted = small_wikitext103(extra={"../../escape.txt": b"x", "/abs.txt": b"y"})
    for name in ["wikitext103_train", "wikitext103_valid", "wikitext103_test"]:
        monkeypatch.setitem(CORPORA, name, dataclasses.replace(CORPORA[name], archive_sha256=hashlib.sha256(crafted).hexdigest()))
    (www / "wt103.zip").write_bytes(crafted)
    download("wikitext103_test", tmp_path / "deep" / "data", url=f"{base}/wt103.zip", timeout=5)
    assert _files(tmp_path) == sorted(["www/wt103.zip", "deep/data/wikitext-103/wiki.test.tokens",
                                       "deep/data/wikitext-103/wiki.train.tokens", "deep/data/wikitext-103/wiki.valid.tokens"])


def test_an_archive_whose_files_fail_their_check_writes_none_of_them(server, tmp_path, small_wikitext103, monkeypatch):
    www, base = server
    wrong = small_wikitext103(lines=(5, 2, 9))                             # test has 9 lines, the registry says 3
    for name in ["wikitext103_train", "wikitext103_valid", "wikitext103_test"]:
        monkeypatch.setitem(CORPORA, name, dataclasses.replace(CORPORA[name], archive_sha256=hashlib.sha256(wrong).hexdigest()))
    (www / "wt103.zip").write_bytes(wrong)
    with pytest.raises(ChecksumError, match="9 lines, expected 3.*nothing was written"):
        download("wikitext103_train", tmp_path / "data", url=f"{base}/wt103.zip", timeout=5)
    assert _files(tmp_path / "data") == []


# ---------------------------------------------------------------- a clone with nothing beside it

def _clone_files(repo):
    "The files a fresh clone of this working tree has: tracked and not ignored."
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True, timeout=60).stdout
    return [name for name in out.decode().split("\0") if name and (repo / name).is_file()]


@pytest.mark.slow
def test_a_copy_with_nothing_beside_it_passes_the_data_reading_tests_and_notebooks(repo, tmp_path):
    """Copy the working tree (what a clone holds) into an empty folder and run, from there, with xlref
    imported from the copy and no XLREF_DATA, every test and notebook that reads data."""
    if not (repo / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout to know which files a clone has")
    clone = tmp_path / "alone" / "xlref"
    for name in _clone_files(repo):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, clone / name)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["xlref"]    # nothing beside it
    env = {k: v for k, v in os.environ.items() if k != "XLREF_DATA"}
    env["PYTHONPATH"] = str(clone)
    where = subprocess.run([sys.executable, "-c", "import xlref.datasets as D; print(D.__file__, D._SHIPPED)"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.split() == [str(clone / "xlref" / "datasets.py"), str(clone / "xlref" / "corpora")], where.stderr
    targets = ["tests/test_datasets.py", "tests/test_tokenization.py", "notebooks/05_datasets.ipynb",
               "notebooks/06_adaptive_softmax.ipynb", "notebooks/13_tokenizers.ipynb"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "-k", "not a_copy_with_nothing_beside_it", *targets],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    report = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("XLREF_XLNET_SPIECE" in line for line in skips), skips    # only the public checkpoint's test may skip
    assert not (tmp_path / "alone" / "shared").exists()


def test_downloaded_files_follow_the_umask(server, tmp_path):
    "Written through a temporary file, a download still gets the usual permissions (not mkstemp's 0600)."
    www, base = server
    (www / "input.txt").write_bytes(SHAKESPEARE)
    old = os.umask(0o022)
    try:
        got = download("tiny_shakespeare", tmp_path / "data", url=f"{base}/input.txt", timeout=5)
    finally:
        os.umask(old)
    assert got.stat().st_mode & 0o777 == 0o644
