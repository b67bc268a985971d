"""Steady device polls answered from Redis; PostgreSQL catches up every few seconds (PRESENCE_FLUSH_S).

Most heartbeats, desired-state polls (`If-None-Match`) and unchanged syncs come from a device for
which nothing changed since its last one. Their PostgreSQL steady paths (devices.services.
device_heartbeat_steady, deployments.control.desired_state_steady) prove that in two statements and
a commit; this module lets the next such poll skip PostgreSQL altogether:

- **Leases.** When a PostgreSQL steady path succeeds, what it verified is stored in Redis under the
  token's hash (`fleet:presence:hb:<hash>` for the heartbeat, `…:ds:<hash>` for the desired state):
  the device, its status and agent version, its interval, its revision and drift. A later poll with
  the same token, device and values is answered from the lease by one Lua script, which also counts
  the request against its rate limit and queues what PostgreSQL must learn: the heartbeat (time,
  metrics) or the token's use.
- **Flush** (`flush`, a beat task every PRESENCE_FLUSH_S, and before and after the connectivity
  sweep): applies the queued heartbeats in one UPDATE with the PostgreSQL steady path's own
  conditions (a heartbeat whose conditions no longer hold is dropped, and so is its lease), records
  the tokens' last use, and drops the leases of every device that changed since the last flush.
- **Invalidation.** Row triggers record, in `devices_presencechange`, each device whose status,
  connectivity, attention flag, agent version, interval, platform or identifier changed, each
  token revoked or deleted, and (deployments) each device whose revision or drift changed. The
  flush drops their leases, then increases an epoch: a lease is only written if the epoch is still
  the one its poll saw, so a lease can never be built from a read older than a change already
  consumed. A change thus reaches the devices within one flush interval.
- **Desired state.** Its lease holds the organization's generation (deployments.freshness); each
  flush publishes the generations that changed (all of them now and then, `_Sent`; never a lower
  one over a higher one), and a lease with another one than the published one misses.
- **Liveness.** The flush sets `fleet:presence:alive` for three intervals. Without it (no worker or
  beat, Redis restarted) every poll misses, and PostgreSQL answers exactly as before.

What this trades: PostgreSQL's last-seen time and metrics lag by up to one flush interval, a change
made by an operator (suspension, a command waiting, a new rollout) reaches a leased device's answers
up to one flush interval later, and a crash of the flush, or of Redis, loses at most the queued
last-seen times (the device's next heartbeat writes them again). Off without Redis or without
PostgreSQL (`PRESENCE`). Scripts read keys they are not given (the organization's generation): one Redis, not
a cluster.
"""

import functools
import json
import time
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection, transaction

from fleet.tenancy import rls

from . import registry
from .models import Device, DeviceToken

PREFIX = "fleet:presence:"
ALIVE, EPOCH, BEATS, USES = (PREFIX + name for name in ("alive", "epoch", "beats", "uses"))
PUBLISHED = PREFIX + "published:"
HEARTBEAT, DESIRED = "hb", "ds"  # the two kinds of lease
CHANGE_TABLE = "devices_presencechange"

# KEYS: alive, rate counter, lease, epoch, pending hash. ARGV: counter expiry, limit, device ref (as
# sent), device ref as a UUID (or ''), published key prefix ('' for none: else the lease's
# `generation` must equal the published value for its `org`), pending field, pending value, number of
# checks n, n (field, value) pairs, then the lease fields to return.
# Returns {count, epoch} on a miss, {count, epoch, 'hit', values…} on a hit.
POLL = """
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
local miss = {count, redis.call('GET', KEYS[4]) or '0'}
if count > tonumber(ARGV[2]) or redis.call('EXISTS', KEYS[1]) == 0 then return miss end
local flat = redis.call('HGETALL', KEYS[3])
if #flat == 0 then return miss end
local lease = {}
for i = 1, #flat, 2 do lease[flat[i]] = flat[i + 1] end
if lease.ref ~= ARGV[3] and lease.device ~= ARGV[4] then return miss end
local n = tonumber(ARGV[8])
for i = 0, n - 1 do
  if lease[ARGV[9 + 2 * i]] ~= ARGV[10 + 2 * i] then return miss end
end
if ARGV[5] ~= '' and (redis.call('GET', ARGV[5] .. (lease.org or '')) or '0') ~= lease.generation then return miss end
redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
local hit = {miss[1], miss[2], 'hit'}
for i = 9 + 2 * n, #ARGV do hit[#hit + 1] = lease[ARGV[i]] or '' end
return hit
"""

# KEYS: lease, epoch. ARGV: the epoch the poll saw, time to live, then field/value pairs.
WRITE = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: the pending hashes. Returns each one's field/value list, and empties them.
TAKE = """
local taken = {}
for i, key in ipairs(KEYS) do
  taken[i] = redis.call('HGETALL', key)
  redis.call('DEL', key)
end
return taken
"""

# KEYS: published keys. ARGV: time to live, then each key's value. Published values are counters that
# only increase: a lower one (from a concurrent flush that read PostgreSQL earlier) is not written.
PUBLISH = """
for i, key in ipairs(KEYS) do
  local stored = tonumber(redis.call('GET', key) or '')
  if not stored or stored <= tonumber(ARGV[i + 1]) then redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
end
return #KEYS
"""
# Published values expire after PUBLISHED_TTL flush intervals. A process sends them all every
# REPUBLISH_EVERY intervals (keys Redis evicted or lost, and their expiry), and in between only the
# values that changed since it last sent them.
PUBLISHED_TTL, REPUBLISH_EVERY = 30, 10


def enabled():
    return settings.PRESENCE


@functools.cache
def _client(url):
    return redis.Redis.from_url(url, decode_responses=True)


def client():
    return _client(settings.REDIS_URL)


@functools.cache
def _script(url, source):
    return _client(url).register_script(source)


def _run(source, *, keys, args):
    return _script(settings.REDIS_URL, source)(keys=keys, args=args)


def _lease_key(kind, secret_hash):
    return f"{PREFIX}{kind}:{secret_hash}"


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class Poll:
    """A poll's outcome: `count` in its rate window; `values` (a hit) or None (a miss: the PostgreSQL
    steady path runs, and `write` stores a lease when it succeeds)."""

    def __init__(self, *, secret_hash, count, epoch, values):
        self.secret_hash, self.count, self.epoch, self.values = secret_hash, count, epoch, values

    def write(self, *, kind, fields):
        """Store what a PostgreSQL steady path just verified, once its transaction commits, unless a
        flush ran since this poll (a change it consumed may postdate what was read)."""
        args = [self.epoch, settings.PRESENCE_LEASE_S]
        for name, value in fields.items():
            args += [name, _text(value)]
        key = _lease_key(kind, self.secret_hash)
        # robust: the answer is already committed, and a lease not written only costs PostgreSQL a poll.
        transaction.on_commit(lambda: _run(WRITE, keys=[key, EPOCH], args=args), robust=True)


def poll(*, kind, secret_hash, device_ref, counter, limit, window, checks=None, published="", pending, entry,
         returns):
    """Answer a poll from the token's `kind` lease in one round trip, counting it in `counter` (the rate
    limit's Redis key) whatever the outcome. A hit needs the lease to name the device `device_ref`,
    to hold each of `checks` ({field: value}) and, with `published` (a publisher's name prefix), its
    `generation` to be the one published for its organization; it queues `entry` in `pending` (BEATS
    or USES) under the token and returns `returns`."""
    try:
        device_uuid = str(uuid.UUID(device_ref))
    except ValueError:
        device_uuid = ""
    published = PUBLISHED + published if published else ""
    args = [window + 1, limit, device_ref, device_uuid, published, secret_hash, entry, len(checks or {})]
    for name, value in (checks or {}).items():
        args += [name, _text(value)]
    reply = _run(POLL, keys=[ALIVE, counter, _lease_key(kind, secret_hash), EPOCH, pending], args=[*args, *returns])
    values = dict(zip(returns, reply[3:], strict=True)) if len(reply) > 2 else None
    return Poll(secret_hash=secret_hash, count=int(reply[0]), epoch=reply[1], values=values)


def forget(*, device_ids):
    """Drop the leases of these devices' tokens when the transaction commits: a revoked, rotated or deleted
    token stops answering at once, not at the next flush (which drops them too, from the triggers)."""
    if not enabled():
        return
    hashes = DeviceToken.objects.filter(device_id__in=device_ids).values_list("secret_hash", flat=True)
    keys = [_lease_key(kind, secret_hash) for secret_hash in hashes for kind in (HEARTBEAT, DESIRED)]
    if keys:
        # robust: if Redis fails here, the flush drops these leases anyway (the triggers recorded the change).
        transaction.on_commit(lambda: client().delete(*keys), robust=True)


def beat_entry(*, now, status, agent_version, metrics):
    """What a leased heartbeat queues for the flush: the PostgreSQL steady path's own arguments."""
    return json.dumps({"t": now.isoformat(), "s": status, "a": agent_version, "m": metrics or {}},
                      separators=(",", ":"))


def use_entry(*, now):
    return now.isoformat()


# --- flush ---------------------------------------------------------------------------------------------
def flush():
    """Apply the queued heartbeats and token uses to PostgreSQL, drop the leases of devices that changed,
    publish the generations that changed and mark presence alive. Returns {"heartbeats", "dropped"}."""
    if not enabled():
        return {"heartbeats": 0, "dropped": 0}
    beats, uses = _run(TAKE, keys=[BEATS, USES], args=[])
    beats = {secret_hash: json.loads(entry) for secret_hash, entry in _pairs(beats).items()}
    with rls.bypass(reason="presence flush"):  # one transaction
        refused = set(beats) - _apply_beats(beats)
        _touch_tokens({**_pairs(uses), **{secret_hash: beat["t"] for secret_hash, beat in beats.items()}})
        drop = refused | _changed_tokens()
        published = {}
        for publisher in registry.presence_publishers():
            published.update(publisher())
        send = _sent.changed(published)
        # Inside the transaction: if Redis fails, the changes stay recorded for the next flush.
        interval = settings.PRESENCE_FLUSH_S
        pipe = client().pipeline(transaction=True)
        for secret_hash in drop:
            pipe.delete(_lease_key(HEARTBEAT, secret_hash), _lease_key(DESIRED, secret_hash))
        pipe.incr(EPOCH)
        if send:
            _script(settings.REDIS_URL, PUBLISH)(keys=[PUBLISHED + name for name in send],
                                                  args=[PUBLISHED_TTL * interval, *send.values()], client=pipe)
        pipe.set(ALIVE, "1", ex=3 * interval)
        pipe.execute()
        _sent.done(send)
    return {"heartbeats": len(beats) - len(refused), "dropped": len(drop)}


class _Sent:
    """The values this process last published. A flush sends only those that changed, and all of them
    when this process's last full send is REPUBLISH_EVERY intervals old. Every worker process keeps its
    own: PUBLISH's ordering makes any interleaving of their flushes safe."""

    def __init__(self):
        self.values, self.full_at = {}, None

    def changed(self, published):
        now = time.monotonic()
        if self.full_at is None or now - self.full_at >= REPUBLISH_EVERY * settings.PRESENCE_FLUSH_S:
            self.values, self.full_at = {}, now
        published = {name: _text(value) for name, value in published.items()}
        return {name: value for name, value in published.items() if self.values.get(name) != value}

    def done(self, sent):
        self.values.update(sent)


_sent = _Sent()


def _pairs(flat):
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _apply_beats(beats):
    """One UPDATE for every queued heartbeat ({token hash: decoded beat_entry}), with the PostgreSQL
    steady path's SQL (token live, status and agent version as reported, online, nothing waiting);
    never moves last_heartbeat back. Returns the token hashes applied."""
    if not beats:
        return set()
    from .services import steady_heartbeat_params, steady_heartbeat_sql

    columns = {"hashes": [], "times": [], "statuses": [], "agents": [], "metrics": []}
    for secret_hash, beat in beats.items():
        for name, value in zip(columns, (secret_hash, beat["t"], beat["s"], beat["a"], json.dumps(beat["m"])),
                               strict=True):
            columns[name].append(value)
    assignments, conditions = steady_heartbeat_sql(at="b.t", status="b.s", agent_version="b.a", metrics="b.m")
    quote = connection.ops.quote_name
    device, token = quote(Device._meta.db_table), quote(DeviceToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {device} AS d SET {assignments}
            FROM unnest(%(hashes)s::text[], %(times)s::timestamptz[], %(statuses)s::text[], %(agents)s::text[],
                        %(metrics)s::jsonb[]) AS b(h, t, s, a, m)
            JOIN {token} AS token ON token.secret_hash = b.h AND token.revoked_at IS NULL
            WHERE d.id = token.device_id AND {conditions}
              AND (d.last_heartbeat IS NULL OR d.last_heartbeat < b.t)
            RETURNING b.h
            """,
            {**steady_heartbeat_params(), **columns},
        )
        return {row[0] for row in cursor.fetchall()}


def _touch_tokens(last_used):
    """Each token's last use, when due (CREDENTIAL_LAST_USED_RESOLUTION_S), as authentication records it."""
    if not last_used:
        return
    table = connection.ops.quote_name(DeviceToken._meta.db_table)
    resolution = timedelta(seconds=settings.CREDENTIAL_LAST_USED_RESOLUTION_S)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS token SET last_used_at = u.t
            FROM unnest(%s::text[], %s::timestamptz[]) AS u(h, t)
            WHERE token.secret_hash = u.h AND token.revoked_at IS NULL
              AND (token.last_used_at IS NULL OR token.last_used_at <= u.t - %s)
            """,
            [list(last_used), list(last_used.values()), resolution],
        )


def _changed_tokens():
    """Take the changes the triggers recorded: the hashes of every token of a changed device, and of
    each token revoked or deleted."""
    table = connection.ops.quote_name(DeviceToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH taken AS (DELETE FROM {CHANGE_TABLE} RETURNING device_id, secret_hash)
            SELECT secret_hash FROM taken WHERE secret_hash IS NOT NULL
            UNION
            SELECT token.secret_hash FROM {table} AS token WHERE token.device_id IN (SELECT device_id FROM taken)
            """
        )
        return {row[0] for row in cursor.fetchall()}


# --- triggers (migration devices 0010; deployments 0009 adds the device state's) -------------------------------
RECORD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION fleet_presence_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    target record;
BEGIN
    IF TG_OP = 'DELETE' THEN target := OLD; ELSE target := NEW; END IF;
    IF TG_ARGV[0] = 'token' THEN
        INSERT INTO {CHANGE_TABLE} (device_id, secret_hash) VALUES (OLD.device_id, OLD.secret_hash);
    ELSIF TG_ARGV[0] = 'device' THEN
        INSERT INTO {CHANGE_TABLE} (device_id) VALUES (target.id);
    ELSE
        INSERT INTO {CHANGE_TABLE} (device_id) VALUES (target.device_id);
    END IF;
    RETURN NULL;
END;
$$;
"""


def trigger_sql(*, name, table, columns, kind):
    """An AFTER UPDATE trigger recording the row when one of `columns` changes, and an AFTER DELETE one.
    `kind`: 'device' records the row's id, 'token' its device and hash, anything else its device_id."""
    old = ", ".join(f"OLD.{column}" for column in columns)
    new = ", ".join(f"NEW.{column}" for column in columns)
    return [
        f"CREATE TRIGGER {name}_update AFTER UPDATE ON {table} FOR EACH ROW"
        f" WHEN (ROW({old}) IS DISTINCT FROM ROW({new})) EXECUTE FUNCTION fleet_presence_changed('{kind}')",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} FOR EACH ROW"
        f" EXECUTE FUNCTION fleet_presence_changed('{kind}')",
    ]


def drop_trigger_sql(*, name, table):
    return [f"DROP TRIGGER IF EXISTS {name}_update ON {table}", f"DROP TRIGGER IF EXISTS {name}_delete ON {table}"]


def install_sql():
    """The change table, the recording function and the triggers on devices and tokens."""
    return [
        f"CREATE UNLOGGED TABLE IF NOT EXISTS {CHANGE_TABLE} (device_id uuid, secret_hash text)",
        RECORD_FUNCTION,
        *trigger_sql(name="fleet_presence_device", table="devices_device", kind="device", columns=[
            "org_id", "device_id", "status", "connectivity_status", "attention", "agent_version",
            "heartbeat_interval_s", "platform"]),
        *trigger_sql(name="fleet_presence_token", table="devices_devicetoken", kind="token",
                     columns=["device_id", "secret_hash", "revoked_at"]),
    ]


def uninstall_sql():
    return [
        *drop_trigger_sql(name="fleet_presence_device", table="devices_device"),
        *drop_trigger_sql(name="fleet_presence_token", table="devices_devicetoken"),
        f"DROP TABLE IF EXISTS {CHANGE_TABLE}",
        "DROP FUNCTION IF EXISTS fleet_presence_changed()",
    ]
