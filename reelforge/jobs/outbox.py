"""The webhook outbox: its table, the trigger that fills it from each job's status changes, and the dispatchers' queries."""

from __future__ import annotations

import json
import time
from typing import Any

from reelforge.jobs.sqlbase import SQLBase

# --- webhooks: the outbox ---------------------------------------------------------------------
# A job's endpoints are recorded with it at submit (jobs.webhooks: {"endpoints": [{"name", "url",
# "kinds", "key"}], "base": URL}). A trigger turns each status change of a top-level job into one
# delivery row per endpoint that asked for that kind of event, inside the transaction that made the
# change: no code path that moves a job (finish, cancel, recovery, a multi-shot job settling) can
# forget its notification, and none is written for a change that was rolled back.
# Kinds: started (start_time set, once per job), completed, failed, canceled, progress (each 10%).

_WEBHOOK_TABLE = """
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, endpoint TEXT NOT NULL, url TEXT NOT NULL, kind TEXT NOT NULL,
        key TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        created {real} NOT NULL, next_attempt {real} NOT NULL, lease_until {real}, owner TEXT, body TEXT,
        last_code INTEGER, last_error TEXT, ended {real}, history TEXT NOT NULL DEFAULT '[]', retried {real},
        job_status TEXT NOT NULL, job_progress {real} NOT NULL
    )
"""
_WEBHOOK_INDEXES = (
    "CREATE INDEX webhook_due ON webhook_deliveries (next_attempt) WHERE state = 'pending'",
    "CREATE INDEX webhook_job ON webhook_deliveries (job_id, created)",
)
# Which kinds one UPDATE of a job row makes (OLD and NEW are the row before and after).
_WEBHOOK_KINDS = """
    SELECT 'started' AS kind WHERE OLD.start_time IS NULL AND NEW.start_time IS NOT NULL
    UNION ALL SELECT lower(NEW.status) WHERE OLD.status <> NEW.status AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED')
    UNION ALL SELECT 'progress' WHERE NEW.status = 'RUNNING' AND {tenths} > {tenths}
"""
# The trigger's body runs only for updates that may make an event (not for each heartbeat's lease renewal).
_WEBHOOK_WHEN = (
    "NEW.parent_id IS NULL AND NEW.webhooks <> '{{{{}}}}' AND (OLD.status <> NEW.status"
    " OR (OLD.start_time IS NULL AND NEW.start_time IS NOT NULL) OR {tenths} <> {tenths})"
)


def _webhook_schema(db, real: str, tenths: str) -> tuple[str, str]:
    """The webhooks column, the deliveries table and its indexes in one dialect (its float type and its
    tenths-of-progress expression); returns the trigger's event kinds and its condition in that dialect."""
    db.execute("ALTER TABLE jobs ADD COLUMN webhooks TEXT NOT NULL DEFAULT '{}'")
    db.execute(_WEBHOOK_TABLE.format(real=real))
    for stmt in _WEBHOOK_INDEXES:
        db.execute(stmt)
    kinds = _WEBHOOK_KINDS.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    when = _WEBHOOK_WHEN.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    return kinds, when


def sqlite_webhooks(db) -> None:
    kinds, when = _webhook_schema(db, "REAL", "CAST(10 * {} AS INTEGER)")
    db.execute(f"""
        CREATE TRIGGER jobs_webhooks AFTER UPDATE ON jobs WHEN {when}
        BEGIN
            INSERT INTO webhook_deliveries (id, job_id, endpoint, url, kind, key, created, next_attempt, job_status, job_progress)
            SELECT 'msg_' || lower(hex(randomblob(12))), NEW.id, json_extract(e.value, '$.name'), json_extract(e.value, '$.url'),
                   k.kind, json_extract(e.value, '$.key'), (julianday('now') - 2440587.5) * 86400.0, (julianday('now') - 2440587.5) * 86400.0,
                   NEW.status, NEW.progress
            FROM json_each(NEW.webhooks, '$.endpoints') e, ({kinds}) k
            WHERE EXISTS (SELECT 1 FROM json_each(e.value, '$.kinds') w WHERE w.value = k.kind);
        END
    """)


WEBHOOK_CHANNEL = "reelforge_webhooks"  # PostgreSQL NOTIFY channel: a delivery was written


def postgres_webhooks(db) -> None:
    kinds, when = _webhook_schema(db, "DOUBLE PRECISION", "trunc(10 * {})")
    # Raw connection: the body holds no placeholders, and "?" must not be rewritten inside it.
    db.conn.execute(f"""
        CREATE FUNCTION reelforge_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            INSERT INTO webhook_deliveries (id, job_id, endpoint, url, kind, key, created, next_attempt, job_status, job_progress)
            SELECT 'msg_' || substr(md5(random()::text || clock_timestamp()::text || NEW.id || k.kind || e.value::text), 1, 24),
                   NEW.id, e.value->>'name', e.value->>'url', k.kind, e.value->>'key',
                   extract(epoch from clock_timestamp()), extract(epoch from clock_timestamp()), NEW.status, NEW.progress
            FROM json_array_elements(NEW.webhooks::json -> 'endpoints') e, ({kinds}) k
            WHERE (e.value -> 'kinds')::jsonb @> to_jsonb(k.kind);
            IF FOUND THEN
                PERFORM pg_notify('{WEBHOOK_CHANNEL}', '');
            END IF;
            RETURN NULL;
        END
        $body$
    """)
    db.conn.execute(f"CREATE TRIGGER jobs_webhooks AFTER UPDATE ON jobs FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION reelforge_webhook_events()")


_DELIVERY_COLUMNS = ("id, job_id, endpoint, url, kind, key, state, attempts, created, next_attempt, lease_until, owner, last_code, last_error,"
                     " ended, history, retried, job_status, job_progress")


def _delivery(row) -> dict[str, Any]:
    d = dict(row)
    d["history"] = json.loads(d["history"])
    return d



class OutboxQueries(SQLBase):
    """Webhook deliveries: the outbox the jobs_webhooks trigger writes (webhooks.py sends them)."""

    _SKIP_LOCKED = ""  # PostgreSQL: FOR UPDATE SKIP LOCKED, so dispatchers never wait for each other's claims

    def _announce_webhooks(self, db) -> None:
        """Tell dispatchers elsewhere that a delivery is due (on commit; the trigger does it for new ones)."""

    def relax_commits(self) -> None:
        """Let this thread's commits skip the wait for the disk (webhook dispatchers: a claim or an
        attempt's record lost to a power cut only means a delivery is sent again, with its same id)."""

    def _relaxed(self, db) -> None:
        """Let this transaction's commit skip the wait for the disk (a dispatcher's claim or record: see relax_commits)."""

    def claim_delivery(self, owner: str, lease_s: float, keys: list[str]) -> dict[str, Any] | None:
        """Take the delivery due first that is signed with one of ``keys`` for ``lease_s`` (counting an attempt), or None.

        ``owner`` names this one claim: every later write about it names it too, so a dispatcher
        whose lease ran out (frozen, killed) can never record over the attempt that followed."""
        if not keys:
            return None
        due = (
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"
            f" AND key IN ({', '.join('?' * len(keys))}) ORDER BY next_attempt, created LIMIT 1{self._SKIP_LOCKED}"
        )

        def body(retrying: bool):
            now = time.time()
            with self._tx() as db:
                if retrying:  # the reply to an earlier try may have been lost after its commit: that claim is ours
                    row = db.execute("SELECT * FROM webhook_deliveries WHERE owner = ?", (owner,)).fetchone()
                    if row is not None:
                        return row
                self._relaxed(db)
                return db.execute(
                    f"UPDATE webhook_deliveries SET owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ({due}) RETURNING *",
                    [owner, now + lease_s, now, now, *keys],
                ).fetchone()

        row = self._attempt(body)
        return _delivery(row) if row is not None else None

    def next_delivery_time(self, keys: list[str]) -> float | None:
        """When the next pending delivery signed with one of ``keys`` is due (None: none is pending)."""
        if not keys:
            return None

        def body(_):
            with self._conn() as db:
                return db.execute(
                    f"SELECT MIN(next_attempt) AS t FROM webhook_deliveries WHERE state = 'pending' AND key IN ({', '.join('?' * len(keys))})", keys
                ).fetchone()

        return self._attempt(body)["t"]

    def end_delivery_attempt(self, delivery_id: str, owner: str, *, state: str, next_attempt: float, code: int | None, error: str | None,
                             history: list, body: str | None = None) -> bool:
        """Record how an attempt went: ``state`` pending (try again at ``next_attempt``), delivered or failed.

        ``body`` is kept on the first attempt that made one; every later attempt sends it unchanged."""

        def run(_):
            now = time.time()
            with self._tx() as db:
                self._relaxed(db)
                row = db.execute(
                    "UPDATE webhook_deliveries SET state = ?, next_attempt = ?, lease_until = NULL, owner = NULL, last_code = ?,"
                    " last_error = ?, history = ?, ended = ?, body = COALESCE(body, ?) WHERE id = ? AND owner = ? RETURNING id",
                    (state, next_attempt, code, error, json.dumps(history), None if state == "pending" else now, body, delivery_id, owner),
                ).fetchone()
            return row is not None

        return self._attempt(run)

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """A job's deliveries, oldest first (their bodies left out)."""

        def body(_):
            with self._conn() as db:
                return db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = ? ORDER BY created, id", (job_id,)).fetchall()

        return [_delivery(r) for r in self._attempt(body)]

    def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        def body(_):
            with self._conn() as db:
                return db.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)).fetchone()

        row = self._attempt(body)
        return _delivery(row) if row is not None else None

    def retry_deliveries(self, ref: str) -> list[str]:
        """Send again the delivery ``ref`` names (whatever its state), or every failed delivery of job ``ref``; their ids.

        A delivery sent again keeps its id and body (receivers deduplicate by webhook-id) and gets
        the whole retry window again, counted from now."""

        def body(_):
            now = time.time()
            with self._tx() as db:
                rows = db.execute(
                    "UPDATE webhook_deliveries SET state = 'pending', next_attempt = ?, ended = NULL, retried = ?"
                    " WHERE (id = ? AND (state <> 'pending' OR next_attempt > ?)) OR (job_id = ? AND state = 'failed') RETURNING id",
                    (now, now, ref, now, ref),
                ).fetchall()
                if rows:
                    self._announce_webhooks(db)
            return [r["id"] for r in rows]

        return self._attempt(body)

