"""The resource library as the resolver's store (``sinks.library.identity.PostgresIdentityStore``), on the
stack's PostgreSQL: what the in-memory store's unit tests check, in SQL."""

from __future__ import annotations

import psycopg
import pytest

from kintsmesh.bench.resolve import scratch_library
from sinks.library.identity import PostgresIdentityStore
from streams.resolve import matching
from tests.unit.streams.resolve.test_memory import crowded_block

pytestmark = pytest.mark.integration


def test_a_valid_rics_block_in_the_library_keeps_the_orphans_however_many_other_rics_share_its_keys(settings):
    with psycopg.connect(scratch_library(settings, "kintsmesh_test_identity_store")) as conn:
        store = PostgresIdentityStore(conn)
        (keys, ric), orphan_id = crowded_block(store)
        assert store.candidate_ids([(keys, ric)]) == [[orphan_id]]
        anyone = store.candidate_ids([(keys, None)])[0]
        assert len(anyone) == matching.BLOCK_LIMIT and orphan_id not in anyone
