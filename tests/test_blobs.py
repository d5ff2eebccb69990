from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mailtriage.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert store.path(sha) == tmp_path / "blobs" / sha[:2] / sha
    assert store.get(sha) == b"hello"
    assert store.put(b"hello", durable=False) == sha
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_path_rejects_non_digests(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
