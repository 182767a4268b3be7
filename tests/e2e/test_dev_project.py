"""The dev project's key: printed once, kept in the data dir, and the same on every start over that data."""

from __future__ import annotations

import pytest

from reverie.api.auth import hash_key
from reverie.store.projects import project_for_key_hash
from reverie_dev.local.runner import KEY_FILE

pytestmark = pytest.mark.e2e


def test_dev_key_belongs_to_the_dev_project_and_is_kept_in_the_data_dir(stack):
    assert project_for_key_hash(stack.clients.db, hash_key(stack.api_key)) == "dev"
    assert (stack.data_dir / KEY_FILE).read_text().strip() == stack.api_key


def test_next_start_over_the_same_data_reuses_the_key(stack):
    # What a restart does: the project exists, the key file is there and Postgres still knows its hash.
    assert stack._dev_key(stack.clients.db) == stack.api_key


def test_key_file_that_postgres_does_not_know_is_replaced(stack, tmp_path):
    key_file = stack.data_dir / KEY_FILE
    kept = key_file.read_text()
    try:
        key_file.write_text("rv_from_a_wiped_database\n")
        fresh = stack._dev_key(stack.clients.db)
        assert fresh != "rv_from_a_wiped_database"
        assert project_for_key_hash(stack.clients.db, hash_key(fresh)) == "dev"
        assert key_file.read_text().strip() == fresh
    finally:
        key_file.write_text(kept)
