"""Text pipeline, PTB loading (checksums, loopback download) and BPTT windows."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from datanas_core.errors import ConfigError, DataError, MissingDependencyError, UnknownNameError
from datanas_lm.data import (
    EOS,
    UNK,
    BPTTLoader,
    Vocabulary,
    as_vocabulary,
    batchify,
    ensure_ptb,
    load_corpus,
    load_ptb,
    load_text_corpus,
    read_tokens,
    sample_seq_len,
)
from datanas_lm.data import ptb as ptb_module


# ------------------------------------------------------------------------------------------------ vocabulary
def test_vocabulary_keeps_first_appearance_order_and_adds_specials() -> None:
    v = Vocabulary.build(["b", "a", "b", EOS, "c"])
    assert v.itos == ["b", "a", EOS, "c", UNK]
    assert v.encode(["a", "zzz"]).tolist() == [1, v.index(UNK)]
    assert v.decode(torch.tensor([0, 3])) == ["b", "c"]


def test_vocabulary_max_size_keeps_the_most_frequent_words() -> None:
    toks = ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 4
    v = Vocabulary.build(toks, max_size=4)  # 2 specials + 2 words
    assert set(v.itos) == {"a", "d", UNK, EOS}
    assert v.index("c") == v.index(UNK)


def test_vocabulary_without_unk_rejects_unknown_words() -> None:
    v = Vocabulary(["x", "y"], unk=None)
    with pytest.raises(DataError, match="'z'"):
        v.index("z")


def test_vocabulary_rejects_duplicates() -> None:
    with pytest.raises(DataError, match="unique"):
        Vocabulary(["a", "a"])


class _FakeTorchtextVocab:
    """Duck-types torchtext.vocab.Vocab: get_stoi, lookup_indices, get_default_index."""

    def __init__(self, words: list[str]) -> None:
        self._stoi = {w: i for i, w in enumerate(words)}

    def get_stoi(self) -> dict[str, int]:
        return dict(self._stoi)

    def lookup_indices(self, tokens: list[str]) -> list[int]:
        return [self._stoi.get(t, 0) for t in tokens]

    def get_default_index(self) -> int:
        return 0


def test_torchtext_style_vocabulary_is_accepted_without_torchtext(tiny_corpus_dir: Path) -> None:
    words = [UNK, EOS] + [f"w{i}" for i in range(34)]
    fake = _FakeTorchtextVocab(words)
    v = as_vocabulary(fake)
    assert v.itos == words and v.unk == UNK
    assert v.lookup_indices(["w3", "nope"]) == fake.lookup_indices(["w3", "nope"])
    corpus = load_text_corpus(tiny_corpus_dir, vocab=fake)
    assert corpus.vocab == v
    assert "torchtext" not in sys.modules


def test_to_torchtext_without_torchtext_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchtext", None)
    monkeypatch.setitem(sys.modules, "torchtext.vocab", None)
    with pytest.raises(MissingDependencyError, match="torchtext"):
        Vocabulary(["a"]).to_torchtext()


def test_as_vocabulary_rejects_other_objects() -> None:
    with pytest.raises(DataError, match="get_itos"):
        as_vocabulary(object())


# ------------------------------------------------------------------------------------------------ text files
def test_read_tokens_appends_eos_per_line(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text(" a b \n\nc\n", encoding="utf-8")
    assert read_tokens(p) == ["a", "b", EOS, EOS, "c", EOS]
    with pytest.raises(DataError, match="does not exist"):
        read_tokens(tmp_path / "missing.txt")


def test_textdir_corpus_maps_unseen_words_to_unk(tiny_corpus_dir: Path) -> None:
    c = load_corpus("textdir", tiny_corpus_dir)
    assert len(c.vocab) == 32  # 30 training words + <unk> + <eos>
    unk = c.vocab.index(UNK)
    assert (c.valid == unk).any() and not (c.train == unk).any()
    assert c.summary()["train_tokens"] == c.train.numel()


def test_textdir_missing_split_names_expected_files(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a b\n", encoding="utf-8")
    with pytest.raises(DataError, match="valid.txt"):
        load_text_corpus(tmp_path)
    with pytest.raises(UnknownNameError, match="ptb, textdir"):
        load_corpus("wikitext", tmp_path)


# ------------------------------------------------------------------------------------------------ batching
def test_batchify_cuts_contiguous_columns() -> None:
    b = batchify(torch.arange(10), 3)
    assert b.shape == (3, 3)
    assert b[:, 1].tolist() == [3, 4, 5]
    with pytest.raises(DataError, match="too short"):
        batchify(torch.arange(3), 3)


def test_sample_seq_len_follows_the_awd_lstm_law() -> None:
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([sample_seq_len(35, g) for _ in range(4000)], dtype=torch.float)
    short = (lens < 26).float().mean().item()  # N(17.5, 5) draws fall far below 26
    assert 0.03 < short < 0.08
    assert abs(lens[lens >= 26].mean().item() - 35) < 0.5
    assert lens.min() >= 5 and lens.max() <= 55


def test_bptt_loader_covers_the_stream_contiguously() -> None:
    data = batchify(torch.arange(1000), 4)
    loader = BPTTLoader(data, 10, seed=3)
    windows = list(loader)
    assert windows[0].reset and not any(w.reset for w in windows[1:])
    assert torch.equal(torch.cat([w.inputs for w in windows]), data[:-1])
    assert torch.equal(torch.cat([w.targets for w in windows]), data[1:])
    assert len({w.inputs.size(0) for w in windows}) > 1  # variable lengths
    assert sum(w.num_tokens for w in windows) == loader.num_tokens(0)


def test_bptt_loader_epochs_are_reproducible_and_resumable() -> None:
    data = batchify(torch.arange(2000), 4)
    a, b = BPTTLoader(data, 10, seed=1), BPTTLoader(data, 10, seed=1)
    e0 = [w.position for w in a]  # pass 0, then a moves on to pass 1
    e1 = [w.position for w in a]
    assert e0 != e1
    b.set_epoch(0)
    assert [w.position for w in b] == e0
    b.set_epoch(1, start_batch=3)
    assert [w.position for w in b] == e1[3:]
    b.set_epoch(0)
    assert [w.position for w in b.iter_from(2)] == e0[2:]
    with pytest.raises(ConfigError, match="start_batch"):
        b.set_epoch(0, start_batch=10_000)


def test_bptt_loader_subset_per_epoch() -> None:
    data = batchify(torch.arange(4000), 4)
    loader = BPTTLoader(data, 10, variable_length=False, max_tokens=200, seed=0)
    w0 = list(loader)
    w1 = list(loader)
    assert sum(w.num_tokens for w in w0) == 200
    assert w0[0].position != w1[0].position  # a different contiguous range each epoch
    fixed = BPTTLoader(data, 10, variable_length=False, max_tokens=200, random_offset=False)
    assert [w.position for w in fixed][0] == 0
    assert [w.inputs.size(0) for w in fixed] == [10] * 5


# ------------------------------------------------------------------------------------------------ PTB
@pytest.mark.data
def test_ptb_vocabulary_and_token_counts(ptb_dir: Path) -> None:
    c = load_ptb(ptb_dir)
    assert len(c.vocab) == 10_000
    assert UNK in c.vocab and EOS in c.vocab
    assert (c.train.numel(), c.valid.numel(), c.test.numel()) == (929_589, 73_760, 82_430)
    assert int((c.train == c.vocab.index(EOS)).sum()) == 42_068  # one <eos> per line


def _fake_ptb(root: Path) -> dict[str, tuple[str, str]]:
    """Small stand-in files and their md5s (for tests that patch the published checksums)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "valid", "test"):
        name = f"ptb.{split}.txt"
        text = f" the {split} cat sat <unk> \n a dog \n"
        (root / name).write_text(text, encoding="utf-8")
        files[split] = (name, hashlib.md5(text.encode()).hexdigest())
    return files


def test_checksum_mismatch_names_expected_and_actual(tmp_path: Path) -> None:
    _fake_ptb(tmp_path)
    with pytest.raises(DataError) as info:
        load_ptb(tmp_path)
    msg = str(info.value)
    assert "ptb.train.txt" in msg and "f26c4b92c5fdc7b3f8c7cdcb991d8420" in msg
    assert hashlib.md5((tmp_path / "ptb.train.txt").read_bytes()).hexdigest() in msg


def test_missing_files_without_download_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        ensure_ptb(tmp_path, download_missing=False)


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_download_from_loopback_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fake_ptb(tmp_path / "mirror")
    monkeypatch.setattr(ptb_module, "PTB_FILES", files)
    with _serve(tmp_path / "mirror") as url:
        got = ensure_ptb(tmp_path / "data", base_url=url, download_missing=True)
    for split, (name, _) in files.items():
        assert got[split] == tmp_path / "data" / name
        assert got[split].read_bytes() == (tmp_path / "mirror" / name).read_bytes()
    assert not list((tmp_path / "data").glob("*.part"))  # atomic: no temporary files left


def test_download_with_wrong_content_fails_and_leaves_nothing(tmp_path: Path) -> None:
    _fake_ptb(tmp_path / "mirror")  # served content does not match the published PTB checksums
    with _serve(tmp_path / "mirror") as url, pytest.raises(DataError, match="expected md5"):
        ensure_ptb(tmp_path / "data", base_url=url, download_missing=True)
    assert not list((tmp_path / "data").glob("ptb.*"))


def test_download_failure_suggests_data_dir(tmp_path: Path) -> None:
    with _serve(tmp_path) as url, pytest.raises(DataError, match="--data-dir"):
        ensure_ptb(tmp_path / "data", base_url=url, download_missing=True)  # 404s


@pytest.mark.data
def test_download_of_the_real_files_from_loopback(ptb_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(ptb_dir, mirror)
    with _serve(mirror) as url:
        c = load_ptb(tmp_path / "data", download_missing=True, base_url=url)
    assert len(c.vocab) == 10_000
