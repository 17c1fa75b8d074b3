//! Each instance's polling health and memory (the `source` table), the leases that say
//! which node of an HA group polls it, and the group's members (the `node` table).

use super::db::{Db, Row};
use super::{Fence, Lease, SourceState, StoreError};
use crate::sla::Memory;

const SOURCE_COLUMNS: &str =
    "failing_since, last_error, blind, last_ok_at, complete_chats, mark_policy, short_since";

pub(super) async fn source(db: &impl Db, instance: &str) -> Result<SourceState, StoreError> {
    Ok(db
        .row(
            &format!("SELECT {SOURCE_COLUMNS} FROM source WHERE instance = ?1"),
            &[&instance],
            |r| source_from(r, 0),
        )
        .await?
        .unwrap_or_default())
}

pub(super) async fn sources(db: &impl Db) -> Result<Vec<(String, SourceState)>, StoreError> {
    db.rows(
        &format!("SELECT instance, {SOURCE_COLUMNS} FROM source ORDER BY instance"),
        &[],
        |r| Ok((r.string(0)?, source_from(r, 1)?)),
    )
    .await
}

/// Writes an instance's source state; the rows written.
pub(super) async fn write_source(
    db: &impl Db,
    instance: &str,
    s: &SourceState,
) -> Result<u64, StoreError> {
    db.execute(
        "INSERT INTO source (instance, failing_since, last_error, blind, last_ok_at, complete_chats,
                             mark_policy, short_since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (instance) DO UPDATE SET failing_since = excluded.failing_since,
            last_error = excluded.last_error, blind = excluded.blind,
            last_ok_at = excluded.last_ok_at, complete_chats = excluded.complete_chats,
            mark_policy = excluded.mark_policy, short_since = excluded.short_since",
        &[
            &instance,
            &s.failing_since,
            &s.last_error,
            &s.blind,
            &s.memory.mark,
            &s.memory.complete_chats.map(|n| n as i64),
            &s.memory.mark_policy,
            &s.memory.short_since,
        ],
    )
    .await
}

/// An instance no longer watched: its source row goes.
pub(super) async fn forget(db: &impl Db, instance: &str) -> Result<u64, StoreError> {
    db.execute("DELETE FROM source WHERE instance = ?1", &[&instance])
        .await
}

fn source_from(r: &dyn Row, at: usize) -> Result<SourceState, StoreError> {
    Ok(SourceState {
        failing_since: r.opt_i64(at)?,
        last_error: r.opt_string(at + 1)?,
        blind: r.bool(at + 2)?,
        memory: Memory {
            mark: r.opt_i64(at + 3)?,
            complete_chats: r.opt_i64(at + 4)?.map(|n| n.max(0) as usize),
            mark_policy: r.opt_i64(at + 5)?,
            short_since: r.opt_i64(at + 6)?,
        },
    })
}

/// Fails the commit unless `fence` still holds the instance's lease (locking the lease
/// row until the commit ends).
pub(super) async fn check_fence<D: Db>(
    db: &D,
    instance: &str,
    fence: &Fence,
) -> Result<(), StoreError> {
    let held = db
        .row(
            &format!(
                "SELECT fence FROM lease WHERE instance = ?1 AND holder = ?2{}",
                D::DIALECT.for_update()
            ),
            &[&instance, &fence.node],
            |r| r.i64(0),
        )
        .await?;
    if held != Some(fence.value) {
        return Err(StoreError::Fenced(instance.to_string()));
    }
    Ok(())
}

/// Takes or renews `instance`'s lease for `node` until `now + lease_ms` by the store's
/// clock ([`Dialect::db_now`](super::dialect::Dialect::db_now)), if it is free, expired,
/// or already `node`'s. A renewal keeps the fence; a takeover moves it on.
pub(super) async fn acquire_lease<D: Db>(
    db: &D,
    instance: &str,
    node: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<Fence>, StoreError> {
    let fence = db
        .row(
            &format!(
                "WITH now AS (SELECT {} AS ms)
                 INSERT INTO lease AS l (instance, holder, expires_ms, fence)
                 VALUES (?1, ?2, (SELECT ms FROM now) + ?3, 1)
                 ON CONFLICT (instance) DO UPDATE SET
                    fence = CASE WHEN l.holder = excluded.holder
                                      AND l.expires_ms > (SELECT ms FROM now)
                                 THEN l.fence ELSE l.fence + 1 END,
                    holder = excluded.holder,
                    expires_ms = excluded.expires_ms
                 WHERE l.holder = excluded.holder OR l.expires_ms <= (SELECT ms FROM now)
                 RETURNING fence",
                D::DIALECT.db_now(4)
            ),
            &[&instance, &node, &lease_ms, &db.now_param(now_ms)],
            |r| r.i64(0),
        )
        .await?;
    Ok(fence.map(|value| Fence {
        node: node.to_string(),
        value,
    }))
}

/// Expires every lease `node` holds, now.
pub(super) async fn release_leases<D: Db>(
    db: &D,
    node: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let d = D::DIALECT;
    db.execute(
        &format!(
            "UPDATE lease SET expires_ms = {}(expires_ms, {}) WHERE holder = ?1",
            d.least(),
            d.db_now(2)
        ),
        &[&node, &db.now_param(now_ms)],
    )
    .await?;
    Ok(())
}

pub(super) async fn leases<D: Db>(db: &D, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
    db.rows(
        &format!(
            "SELECT instance, holder, expires_ms, fence, expires_ms - {}
             FROM lease ORDER BY instance",
            D::DIALECT.db_now(1)
        ),
        &[&db.now_param(now_ms)],
        |r| {
            Ok(Lease {
                instance: r.string(0)?,
                holder: r.string(1)?,
                expires_ms: r.i64(2)?,
                fence: r.i64(3)?,
                remaining_ms: r.i64(4)?,
            })
        },
    )
    .await
}

/// Hands `instance` to another node: expires `node`'s lease on it now (a no-op when
/// `node` does not hold it). The new holder's takeover moves the fence on.
pub(super) async fn release_lease<D: Db>(
    db: &D,
    instance: &str,
    node: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let d = D::DIALECT;
    db.execute(
        &format!(
            "UPDATE lease SET expires_ms = {}(expires_ms, {}) WHERE instance = ?1 AND holder = ?2",
            d.least(),
            d.db_now(3)
        ),
        &[&instance, &node, &db.now_param(now_ms)],
    )
    .await?;
    Ok(())
}

/// `node` is a live member of the group until `now + lease_ms` by the store's clock.
/// Rows of nodes gone for a day are dropped on the way.
pub(super) async fn heartbeat<D: Db>(
    db: &D,
    node: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<(), StoreError> {
    let now = D::DIALECT.db_now(3);
    db.execute(
        &format!(
            "INSERT INTO node (name, expires_ms) VALUES (?1, {now} + ?2)
             ON CONFLICT (name) DO UPDATE SET expires_ms = excluded.expires_ms"
        ),
        &[&node, &lease_ms, &db.now_param(now_ms)],
    )
    .await?;
    db.execute(
        &format!(
            "DELETE FROM node WHERE expires_ms < {} - 86400000",
            D::DIALECT.db_now(1)
        ),
        &[&db.now_param(now_ms)],
    )
    .await?;
    Ok(())
}

/// The group's live members, by name.
pub(super) async fn members<D: Db>(db: &D, now_ms: i64) -> Result<Vec<String>, StoreError> {
    db.rows(
        &format!(
            "SELECT name FROM node WHERE expires_ms > {} ORDER BY name",
            D::DIALECT.db_now(1)
        ),
        &[&db.now_param(now_ms)],
        |r| r.string(0),
    )
    .await
}

/// `node` leaves the group now (a clean shutdown): the others share its instances at
/// their next look instead of after `ha.lease`.
pub(super) async fn leave<D: Db>(db: &D, node: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM node WHERE name = ?1", &[&node])
        .await?;
    Ok(())
}
