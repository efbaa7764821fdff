"""Fixtures of the datanas-lm tests: a tiny generated corpus and the location of the shared PTB files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

#: ``<repo_root>/../shared/data/ptb`` (the real PTB files, when this checkout has them).
SHARED_PTB = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ptb"


def write_corpus(
    root: Path, *, seed: int = 0, words: int = 30, lines: tuple[int, int, int] = (120, 30, 30)
) -> Path:
    """Three small text files (train/valid/test); valid and test use a few words the training file lacks."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(words + 4)]
    root.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines, strict=True):
        pool = vocab[:words] if split == "train" else vocab
        with open(root / f"{split}.txt", "w", encoding="utf-8") as fh:
            for _ in range(n):
                fh.write(" ".join(rng.choice(pool) for _ in range(rng.randint(2, 9))) + "\n")
    return root


@pytest.fixture
def tiny_corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def patterned_corpus_dir(tmp_path: Path) -> Path:
    """A learnable corpus: every line is a run of consecutive words ``w{k} w{k+1} ...`` (mod 20)."""
    rng = random.Random(0)
    root = tmp_path / "patterned"
    root.mkdir()
    for split, n in (("train", 200), ("valid", 40), ("test", 40)):
        with open(root / f"{split}.txt", "w", encoding="utf-8") as fh:
            for _ in range(n):
                k = rng.randrange(20)
                fh.write(" ".join(f"w{(k + i) % 20}" for i in range(rng.randint(3, 8))) + "\n")
    return root


@pytest.fixture
def ptb_dir() -> Path:
    if not (SHARED_PTB / "ptb.train.txt").is_file():
        pytest.skip(f"the shared PTB files are not present at {SHARED_PTB}")
    return SHARED_PTB
