"""The tables written most carry no index that another index already provides: every index is
rewritten on insert (and on non-HOT updates), so a redundant one is pure write cost."""

import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

WRITTEN_MOST = [
    "devices_device",  # heartbeats, bulk label changes
    "devices_devicetoken",
    "devices_devicegroupmembership",  # group re-materialization
    "deployments_deviceassignment",  # rollouts
    "deployments_devicecommand",
    "telemetry_reading",  # ingest
    "activity_activityevent",
]

# A non-unique plain btree index whose key columns (with their operator classes) lead another btree
# index of the same table.
REDUNDANT = """
SELECT a.indrelid::regclass::text, a.indexrelid::regclass::text, b.indexrelid::regclass::text
FROM pg_index a
JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
JOIN pg_class ia ON ia.oid = a.indexrelid
JOIN pg_class ib ON ib.oid = b.indexrelid
WHERE a.indrelid::regclass::text = ANY(%s)
  AND ia.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND ib.relam = ia.relam
  AND NOT a.indisunique AND a.indpred IS NULL AND a.indexprs IS NULL AND b.indexprs IS NULL
  AND a.indnkeyatts <= b.indnkeyatts
  AND (string_to_array(b.indkey::text, ' '))[1:a.indnkeyatts] = (string_to_array(a.indkey::text, ' '))[1:a.indnkeyatts]
  AND (string_to_array(b.indclass::text, ' '))[1:a.indnkeyatts] = (string_to_array(a.indclass::text, ' '))[1:a.indnkeyatts]
"""


def test_the_tables_written_most_have_no_redundant_index():
    with connection.cursor() as cursor:
        cursor.execute(REDUNDANT, [WRITTEN_MOST])
        redundant = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'", [WRITTEN_MOST])
        assert cursor.fetchone()[0] == len(WRITTEN_MOST)  # the names above are real tables
    assert redundant == [], [f"{table}: {index} is covered by {covering}" for table, index, covering in redundant]


# An index whose first column's operators are none of them leakproof: under row-level security
# PostgreSQL applies the policy before any condition of the query whose operator is not leakproof, so
# such an index can never serve the runtime role (jsonb @> on a GIN index, for one).
UNUSABLE_UNDER_RLS = """
SELECT i.indexrelid::regclass::text
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relforcerowsecurity AND NOT EXISTS (
  SELECT 1 FROM pg_opclass oc
  JOIN pg_amop op ON op.amopfamily = oc.opcfamily AND op.amoppurpose = 's'
  JOIN pg_operator o ON o.oid = op.amopopr
  JOIN pg_proc p ON p.oid = o.oprcode
  WHERE oc.oid = i.indclass[0] AND p.proleakproof
)
"""


def test_every_index_of_an_organization_scoped_table_can_serve_the_runtime_role():
    with connection.cursor() as cursor:
        cursor.execute(UNUSABLE_UNDER_RLS)
        unusable = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM pg_class WHERE relforcerowsecurity")
        assert cursor.fetchone()[0] > 20  # the organization-scoped tables are there
    assert unusable == [], f"no query of the runtime role can use {unusable}"
