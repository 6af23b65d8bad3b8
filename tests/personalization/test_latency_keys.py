"""The in-memory API key table (PER-g1 latency): answered from memory while the catalog is unchanged, and
current at the next look-up after any change, including one made through another catalog handle (as another
process would), without anyone calling ``forget_cached_keys``."""

from __future__ import annotations

import pytest

from gaiverse.api import keys
from gaiverse.api.keys import NEEDS_RELOAD, cached_user_by_key, create_user, find_user_by_key, hash_key
from storage.catalog import Catalog

pytestmark = pytest.mark.clause("PER-g1")


def test_key_table_is_served_from_memory_and_follows_every_catalog_change(tmp_path, monkeypatch):
    catalog = Catalog(tmp_path / "catalog.duckdb")
    alice, alice_key = create_user(catalog, "alice")
    assert cached_user_by_key(catalog, alice_key) is NEEDS_RELOAD  # nothing loaded yet
    assert find_user_by_key(catalog, alice_key) == alice

    queries = []
    real_query = Catalog.query
    monkeypatch.setattr(Catalog, "query", lambda self, *a: queries.append(a) or real_query(self, *a))
    for _ in range(50):  # unchanged catalog: no query, and the event-loop path answers too
        assert find_user_by_key(catalog, alice_key) == alice
        assert cached_user_by_key(catalog, alice_key) == alice
    assert cached_user_by_key(catalog, "gv_not-a-key") is None and queries == []

    elsewhere = Catalog(catalog.path)  # another handle on the file: this process's cache is not told
    bob, bob_key = create_user(elsewhere, "bob")
    assert cached_user_by_key(catalog, bob_key) is NEEDS_RELOAD
    assert find_user_by_key(catalog, bob_key) == bob and len(queries) == 1
    with elsewhere.write() as con:  # revocation through the other handle
        con.execute("DELETE FROM users WHERE key_hash = ?", [hash_key(alice_key)])
    assert find_user_by_key(catalog, alice_key) is None
    assert find_user_by_key(catalog, bob_key) == bob


def test_key_table_reloads_after_its_maximum_age(tmp_path, monkeypatch):
    catalog = Catalog(tmp_path / "catalog.duckdb")
    user, key = create_user(catalog, "carol")
    assert find_user_by_key(catalog, key) == user
    monkeypatch.setattr(keys, "KEY_TABLE_MAX_AGE", 0.0)
    assert cached_user_by_key(catalog, key) is NEEDS_RELOAD
    keys.forget_cached_keys()
    assert cached_user_by_key(catalog, key) is NEEDS_RELOAD
    monkeypatch.setattr(keys, "KEY_TABLE_MAX_AGE", 60.0)
    assert find_user_by_key(catalog, key) == user and cached_user_by_key(catalog, key) == user
