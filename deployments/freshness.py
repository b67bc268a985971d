"""Knowing, without recomputing it, that a device's desired state has not changed (PostgreSQL).

A device polls its desired state (`If-None-Match`) and syncs (`known_revision`) every few seconds,
and nearly always nothing has changed. Recomputing the content to find that out costs four queries
and a hash. Instead:

- Triggers on every table the content is computed from record which organizations a statement
  touched (`deployments_desiredchange`, a scratch table emptied before commit; the DELETE sees only
  the transaction's own rows), and a deferred constraint trigger increases each such organization's
  `DesiredGeneration.value` once, at commit.
  A change to a table without organization (capabilities) or to a public catalog row counts for
  every organization.
- `control.desired_state` stores, with the content hash, the generation it read *before* reading
  any input, and the device's own inputs (`control.device_fingerprint`).
- The steady path (`control.desired_state_steady`) answers from the stored revision only when both
  still match; anything else recomputes. A change committed while the content is being computed
  leaves the stored generation behind, so the next poll recomputes: never a stale answer.

The bump waits for commit so that writers hold the counter's row lock for an instant, not for
the length of their transaction (a rollout's materialization); updates that change no input
(an assignment's reported status, a profile's scores) bump nothing.
"""

CHANGE_TABLE = "deployments_desiredchange"
BUMP_CONSTRAINT = "fleet_desired_bump"

# (table, organization column or None when the table has none, the update key and the columns
# that are inputs, when only some are: an update of the others bumps nothing).
WATCHED = [
    ("deployments_deviceassignment", "org_id", ("id", ["org_id", "deployment_id", "device_id", "source", "in_rollout"])),
    ("deployments_deployment", "org_id", None),
    ("deployments_capabilityprofile", "org_id", ("device_id", ["org_id", "device_class"])),
    ("apps_catalog_modelcapability", None, None),
    ("apps_catalog_catalogmodel", "org_id", None),
    ("apps_catalog_modelvariant", "org_id", None),
    ("apps_catalog_app", "org_id", None),
    ("apps_catalog_capabilityslot", "org_id", None),
    ("apps_catalog_inferenceconfig", "org_id", None),
]

# Statement level: one insert per statement, whatever its row count (materializing 100,000
# assignments records one scope). A NULL scope means every organization.
TOUCHED_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleet_desired_touched() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    scope text := CASE WHEN TG_ARGV[0] = '' THEN 'NULL::uuid' ELSE 'r.' || quote_ident(TG_ARGV[0]) END;
    changed text := '';
BEGIN
    IF TG_OP = 'UPDATE' AND TG_NARGS > 1 THEN
        FOR i IN 2 .. TG_NARGS - 1 LOOP
            changed := changed || CASE WHEN i > 2 THEN ' OR ' ELSE '' END
                || format('o.%1$I IS DISTINCT FROM r.%1$I', TG_ARGV[i]);
        END LOOP;
        EXECUTE format('INSERT INTO {CHANGE_TABLE} (scope) SELECT DISTINCT %1$s FROM new_rows r'
                       || ' JOIN old_rows o ON o.%2$I = r.%2$I WHERE %3$s', scope, TG_ARGV[1], changed);
    ELSE
        EXECUTE format('INSERT INTO {CHANGE_TABLE} (scope) SELECT DISTINCT %1$s FROM %2$s r', scope,
                       CASE WHEN TG_OP = 'DELETE' THEN 'old_rows' ELSE 'new_rows' END);
    END IF;
    RETURN NULL;
END;
$$;
"""

# At commit: the transaction's first event bumps every organization it recorded, in one statement
# that locks their counters in id order (two commits can then never wait on each other in a cycle);
# its later events find nothing left. The organization context may be gone by then (rls.bypass
# resets its setting), so the bypass is set here, for this statement only.
BUMP_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleet_desired_bump() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    previous text := coalesce(current_setting('app.rls_bypass', true), '');
    scopes uuid[];
    everyone boolean;
BEGIN
    WITH recorded AS (DELETE FROM {CHANGE_TABLE} RETURNING scope)
    SELECT array_agg(scope) FILTER (WHERE scope IS NOT NULL), bool_or(scope IS NULL) INTO scopes, everyone
    FROM recorded;
    IF everyone IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('app.rls_bypass', 'on', true);
    INSERT INTO deployments_desiredgeneration (org_id, value)
    SELECT id, 1 FROM tenancy_organization WHERE everyone OR id = ANY(scopes) ORDER BY id
    ON CONFLICT (org_id) DO UPDATE SET value = deployments_desiredgeneration.value + 1;
    PERFORM set_config('app.rls_bypass', previous, true);
    RETURN NULL;
END;
$$;
"""


def _trigger_name(table, event):
    return f"fleet_desired_{event.lower()}_{table}"[:63]


def install_sql():
    statements = [
        f"CREATE UNLOGGED TABLE IF NOT EXISTS {CHANGE_TABLE} (scope uuid)",
        TOUCHED_FUNCTION,
        BUMP_FUNCTION,
        f"""CREATE CONSTRAINT TRIGGER {BUMP_CONSTRAINT} AFTER INSERT ON {CHANGE_TABLE}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fleet_desired_bump()""",
    ]
    for table, org_column, update_filter in WATCHED:
        for event, transition in (("INSERT", "NEW TABLE AS new_rows"), ("DELETE", "OLD TABLE AS old_rows"),
                                  ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
            args = [org_column or ""]
            if event == "UPDATE" and update_filter:
                key, columns = update_filter
                args += [key, *columns]
            quoted = ", ".join(f"'{arg}'" for arg in args)
            statements.append(
                f"CREATE TRIGGER {_trigger_name(table, event)} AFTER {event} ON {table} REFERENCING {transition}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION fleet_desired_touched({quoted})"
            )
    return statements


def uninstall_sql():
    statements = [
        f"DROP TRIGGER IF EXISTS {_trigger_name(table, event)} ON {table}"
        for table, _, _ in WATCHED
        for event in ("INSERT", "DELETE", "UPDATE")
    ]
    return statements + [
        f"DROP TABLE IF EXISTS {CHANGE_TABLE}",
        "DROP FUNCTION IF EXISTS fleet_desired_bump()",
        "DROP FUNCTION IF EXISTS fleet_desired_touched()",
    ]
