//! The outbox: notifications enqueued with the changes that caused them, claimed by one
//! sender at a time, and acknowledged, retried or given up. A claim and everything it is
//! checked against are judged by the store's clock ([`Db::now_param`]).

use super::db::{Db, List, Row, Value};
use super::{Counts, Queued, Stage, State, StoreError};
use crate::alert::Outgoing;

/// An outbox row's columns, for [`queued_from`].
fn columns(dialect: super::dialect::Dialect) -> String {
    format!(
        "id, created_at, instance, channel, {}, attempts, state, next_attempt_ms, owner, \
         claim_until_ms, done_at, last_error",
        dialect.document()
    )
}

/// A claimable notice must not overtake an undelivered earlier notice of another kind
/// about the same subject (a chat, a digest's chats, the monitor) of the same instance on
/// the same channel (`o` is the candidate row).
const IN_ORDER: &str = "NOT EXISTS (
        SELECT 1 FROM outbox f
        WHERE f.channel = o.channel AND f.instance = o.instance AND f.subject = o.subject
          AND f.id < o.id AND f.status <> o.status AND f.state IN ('pending', 'claimed'))";

/// Enqueues `outgoing`, due at once; their ids. Adds the rows written to `written`.
pub(super) async fn insert<D: Db>(
    db: &D,
    outgoing: &[Outgoing],
    now: i64,
    written: &mut u64,
) -> Result<Vec<i64>, StoreError> {
    let d = D::DIALECT;
    let apart = d.documents_apart();
    let sql = format!(
        "INSERT INTO outbox (created_at, instance, channel, status, next_attempt_ms, subject{})
         VALUES (?1, ?2, ?3, ?4, {}, ?6{}) RETURNING id",
        if apart { "" } else { ", document" },
        d.db_now(5),
        if apart { "" } else { ", ?7" },
    );
    let clock = db.now_param(now * 1000);
    let mut ids = Vec::with_capacity(outgoing.len());
    for o in outgoing {
        let document = serde_json::to_string(&o.doc)?;
        let status = o.doc.status.as_str();
        let mut values: Vec<&dyn Value> = vec![
            &now,
            &o.doc.instance,
            &o.channel,
            &status,
            &clock,
            &o.subject,
        ];
        if !apart {
            values.push(&document);
        }
        let id = db
            .row(&sql, &values, |r| r.i64(0))
            .await?
            .ok_or_else(|| StoreError::Corrupt("an outbox insert returned no id".into()))?;
        *written += 1;
        if apart {
            *written += db
                .execute(
                    "INSERT INTO outbox_document (id, document) VALUES (?1, ?2)",
                    &[&id, &document],
                )
                .await?;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Claims `channel`'s oldest due notification for `owner` until `now_ms + claim_ms`
/// (SQLite's caller runs it in a transaction taken at once; PostgreSQL passes over rows
/// another node is claiming).
pub(super) async fn claim<D: Db>(
    db: &D,
    owner: &str,
    channel: &str,
    now_ms: i64,
    claim_ms: i64,
) -> Result<Option<Queued>, StoreError> {
    let d = D::DIALECT;
    db.row(
        &format!(
            "WITH now AS (SELECT {now} AS ms)
             UPDATE outbox SET state = 'claimed', owner = ?2,
                               claim_until_ms = (SELECT ms FROM now) + ?3
             WHERE id = (
                SELECT id FROM outbox o
                WHERE channel = ?1
                  AND ((state = 'pending' AND next_attempt_ms <= (SELECT ms FROM now))
                       OR (state = 'claimed' AND claim_until_ms <= (SELECT ms FROM now)))
                  AND {IN_ORDER}
                ORDER BY id LIMIT 1{skip})
             RETURNING {columns}",
            now = d.db_now(4),
            skip = d.for_update_skip_locked(),
            columns = columns(d),
        ),
        &[&channel, &owner, &claim_ms, &db.now_param(now_ms)],
        queued_from,
    )
    .await
}

/// Row `?1`, claimed by `?2`: what a sender may move on once it has tried.
const CLAIMED_BY: &str = "WHERE id = ?1 AND state = 'claimed' AND owner = ?2";

/// Claimed → sent. `false` when `owner` no longer holds the claim.
pub(super) async fn ack(db: &impl Db, id: i64, owner: &str, at: i64) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            &format!(
                "UPDATE outbox SET state = 'sent', done_at = ?3, last_error = NULL, owner = NULL,
                                   claim_until_ms = NULL
                 {CLAIMED_BY}"
            ),
            &[&id, &owner, &at],
        )
        .await?
        == 1)
}

/// Whether `owner` still holds an unexpired claim on `id`, extending it if so.
pub(super) async fn confirm_claim<D: Db>(
    db: &D,
    id: i64,
    owner: &str,
    now_ms: i64,
    claim_ms: i64,
) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            &format!(
                "UPDATE outbox SET claim_until_ms = {now} + ?3
                 {CLAIMED_BY} AND claim_until_ms > {now}",
                now = D::DIALECT.db_now(4)
            ),
            &[&id, &owner, &claim_ms, &db.now_param(now_ms)],
        )
        .await?
        == 1)
}

/// Claimed → pending, due `retry_in_ms` from the store's now.
pub(super) async fn nack<D: Db>(
    db: &D,
    id: i64,
    owner: &str,
    now_ms: i64,
    retry_in_ms: i64,
    error: &str,
) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            &format!(
                "UPDATE outbox SET state = 'pending', attempts = attempts + 1,
                                   next_attempt_ms = {} + ?3,
                                   last_error = ?4, owner = NULL, claim_until_ms = NULL
                 {CLAIMED_BY}",
                D::DIALECT.db_now(5)
            ),
            &[&id, &owner, &retry_in_ms, &error, &db.now_param(now_ms)],
        )
        .await?
        == 1)
}

/// Claimed by `owner` (or, with `None`, pending) → dead.
pub(super) async fn kill(
    db: &impl Db,
    id: i64,
    owner: Option<&str>,
    at: i64,
    error: &str,
) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = ?3,
                               last_error = ?4, owner = NULL, claim_until_ms = NULL
             WHERE id = ?1 AND ((CAST(?2 AS TEXT) IS NULL AND state = 'pending')
                                OR (state = 'claimed' AND owner = ?2))",
            &[&id, &owner, &at, &error],
        )
        .await?
        == 1)
}

/// Pending notifications of channels not in `known`, created at or before `before`: dead.
pub(super) async fn kill_orphans<D: Db>(
    db: &D,
    known: &[String],
    before: i64,
    now: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    db.rows(
        &format!(
            "UPDATE outbox SET state = 'dead', done_at = ?3,
                    last_error = 'channel \"' || channel || '\" is no longer configured'
             WHERE state = 'pending' AND created_at <= ?2 AND NOT ({})
             RETURNING id, channel",
            D::DIALECT.in_list("channel", 1)
        ),
        &[&List::new(known), &before, &now],
        |r| Ok((r.i64(0)?, r.string(1)?)),
    )
    .await
}

/// How long until `channel`'s next notification falls due, by the store's clock.
pub(super) async fn next_due_in_ms<D: Db>(
    db: &D,
    channel: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    // A notice held back by an earlier one is not due on its own: counting it would wake
    // the delivery loop over and over while that one waits out its backoff.
    Ok(db
        .row(
            &format!(
                "SELECT min(CASE state WHEN 'pending' THEN next_attempt_ms
                                       ELSE claim_until_ms END) - {}
                 FROM outbox o
                 WHERE channel = ?1 AND state IN ('pending', 'claimed') AND {IN_ORDER}",
                D::DIALECT.db_now(2)
            ),
            &[&channel, &db.now_param(now_ms)],
            |r| r.opt_i64(0),
        )
        .await?
        .flatten())
}

/// Notifications at `stage`, newest first.
pub(super) async fn list<D: Db>(
    db: &D,
    stage: Stage,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    db.rows(
        &format!(
            "SELECT {} FROM outbox WHERE state = ?1 ORDER BY id DESC LIMIT ?2",
            columns(D::DIALECT)
        ),
        &[&stage.as_str(), &(limit as i64)],
        queued_from,
    )
    .await
}

/// How many notifications are at each stage.
pub(super) async fn counts(db: &impl Db) -> Result<Counts, StoreError> {
    let mut counts = Counts::default();
    db.each(
        "SELECT state, count(*) FROM outbox GROUP BY state",
        &[],
        &mut |r| {
            counts.add(r.str(0)?, r.i64(1)?.max(0) as u64);
            Ok(())
        },
    )
    .await?;
    Ok(counts)
}

fn queued_from(r: &dyn Row) -> Result<Queued, StoreError> {
    Ok(Queued {
        id: r.i64(0)?,
        created_at: r.i64(1)?,
        instance: r.string(2)?,
        channel: r.string(3)?,
        doc: serde_json::from_str(r.str(4)?)?,
        attempts: r.u32(5)?,
        state: State::from_row(
            r.str(6)?,
            r.i64(7)?,
            r.opt_string(8)?,
            r.opt_i64(9)?,
            r.opt_i64(10)?,
        )?,
        last_error: r.opt_string(11)?,
    })
}
