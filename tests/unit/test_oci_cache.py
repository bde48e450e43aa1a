"""The OCI digest cache: what pruning keeps (a pure decision over what is referenced, what is on disk and what is
being written), and the directory itself with real files and a real concurrent writer."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from artifact_agent.oci_cache import (
    CONFIG,
    CacheUse,
    DigestCache,
    cached_files_to_delete,
    entry_name,
    referenced_names,
    source_name,
)

OLD, MOVED, CURRENT, LAST_GOOD = ("sha256:" + c * 64 for c in "1234")


def _files(digest: str, label: str = "rules") -> set[str]:
    return {entry_name(digest, label), entry_name(digest, "config")}


def test_an_artifact_failing_for_good_does_not_stop_pruning_the_others() -> None:
    uses = [
        CacheUse("rules", frozenset({CURRENT}), "A"),  # its tag moved twice: OLD, MOVED, CURRENT
        CacheUse("rules", frozenset(), "B"),  # never resolved (its tag does not exist): references nothing
        CacheUse("plugin", frozenset({LAST_GOOD}), "C"),  # its refresh fails, it keeps serving LAST_GOOD
    ]
    kept = _files(CURRENT) | _files(LAST_GOOD, "plugin") | {source_name("A"), source_name("C")}
    on_disk = kept | _files(OLD) | _files(MOVED) | {source_name("gone")}
    assert set(cached_files_to_delete(referenced_names(uses), on_disk, in_flight=())) == (
        _files(OLD) | _files(MOVED) | {source_name("gone")}
    )


def test_the_files_of_every_digest_an_artifact_references_are_kept_with_their_config() -> None:
    # What the artifact delivers, and what its source last resolved to (a first pull after a restart falls back on
    # it): both, each with its config.
    uses = [CacheUse("plugin", frozenset({CURRENT, LAST_GOOD}), "A")]
    assert referenced_names(uses) == _files(CURRENT, "plugin") | _files(LAST_GOOD, "plugin") | {source_name("A")}
    assert referenced_names([CacheUse("rules", frozenset({"sha256:../../etc/passwd"}))]) == set(), "no such file"


def test_hidden_names_are_deleted_unless_being_written_now() -> None:
    writing = ".rules-" + "4" * 64 + ".0a1b2c3d.tmp"
    left = [".layer-0123456789abcdef.0a1b2c3d.tmp", ".download-00112233", ".config-" + "5" * 64 + ".aa.tmp"]
    assert cached_files_to_delete(set(), [writing, *left], in_flight={writing}) == sorted(left)


def test_digest_cache_round_trip_and_pruning(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "..oci-cache")
    assert cache.get(OLD, "rules") is None
    cache.put(OLD, "rules", b"one")
    cache.put(CURRENT, "plugin", b"two")
    cache.remember("A", CURRENT)
    assert (cache.get(OLD, "rules"), cache.get(OLD, "plugin"), cache.resolved("A")) == (b"one", None, CURRENT)
    assert cache.prune([CacheUse("plugin", frozenset({CURRENT}), "A")]) == [entry_name(OLD, "rules")]
    assert (cache.get(OLD, "rules"), cache.get(CURRENT, "plugin"), cache.resolved("A")) == (None, b"two", CURRENT)
    with pytest.raises(ValueError, match="not a sha256 digest"):
        cache.get("sha256:../../etc/passwd", "rules")


def test_what_an_interrupted_download_or_a_crashed_agent_left_is_removed_at_the_first_prune(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "..oci-cache")
    cache.put(CURRENT, "plugin", b"kept")
    spool = cache.directory / ".download-0011223344556677"
    spool.mkdir()
    (spool / ".layer-0123456789abcdef.0a1b2c3d.tmp").write_bytes(b"half a layer")
    leftovers = [cache.directory / ".layer-0123456789abcdef.0a1b2c3d.tmp", cache.directory / ".plugin-x.1.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half")  # just now: their age does not matter, no write of this agent holds them
    cache.prune([CacheUse("plugin", frozenset({CURRENT}))])
    assert sorted(os.listdir(cache.directory)) == [entry_name(CURRENT, "plugin")]


def test_a_download_spool_survives_pruning_while_in_use_and_is_removed_after(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "..oci-cache")
    with cache.spool() as spool:
        (spool / ".layer-x.tmp").write_bytes(b"streaming in")
        assert cache.prune([]) == []
        assert (spool / ".layer-x.tmp").read_bytes() == b"streaming in"
    assert os.listdir(cache.directory) == []


def test_pruning_never_deletes_a_file_a_concurrent_write_is_writing(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "..oci-cache")
    cache.directory.mkdir()
    digests = [f"sha256:{index:064x}" for index in range(40)]
    uses = [CacheUse("plugin", frozenset(digests))]
    failures: list[BaseException] = []

    def write_all() -> None:
        try:
            for digest in digests:
                cache.put(digest, "plugin", os.urandom(256 * 1024))
        except BaseException as error:  # a temporary file deleted under the writer: replace() fails
            failures.append(error)

    writer = threading.Thread(target=write_all)
    writer.start()
    deleted: list[str] = []
    deadline = time.monotonic() + 60
    while writer.is_alive() and time.monotonic() < deadline:
        deleted += cache.prune(uses)
    writer.join()
    assert failures == []
    assert deleted == []
    assert sorted(os.listdir(cache.directory)) == sorted(entry_name(digest, "plugin") for digest in digests)


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "..oci-cache")
    taken = cache.directory / entry_name(CURRENT, "rules")
    taken.mkdir(parents=True)
    (taken / "occupied").write_bytes(b"")  # replace() cannot put a file over a non-empty directory
    with pytest.raises(IsADirectoryError):
        cache.put(CURRENT, "rules", b"data")
    assert os.listdir(cache.directory) == [taken.name]


def test_a_forgotten_source_offers_nothing_to_a_restart_and_its_digest_is_pruned(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path)
    digest = "sha256:" + "c" * 64
    cache.put(digest, "rules", b"- list: c\n  items: []\n")
    cache.put(digest, CONFIG, b"null")
    cache.remember("rules tag c", digest)
    cache.forget("rules tag c")
    cache.forget("rules tag c")  # twice: nothing to forget is no error
    assert cache.resolved("rules tag c") is None
    cache.prune([CacheUse("rules", frozenset(), "rules tag c")])
    assert os.listdir(tmp_path) == []
