//! Acknowledgements: someone on call said "I'm on it" for an open episode (docs/spec.md
//! section 2). One row per open episode, beside it: a cycle reads it with the episode and
//! never rewrites it except to note that the channels were told; when the episode ends,
//! history keeps who acknowledged and when, and the row goes.
//!
//! Acknowledging bumps the instance's generation, in the same transaction: a cycle that
//! read its episodes before the acknowledgement cannot commit (it would fire a tier the
//! acknowledgement holds), and on PostgreSQL the bump waits for a commit under way, so an
//! acknowledgement never lands on an episode that commit is closing (the row would
//! outlive it and hold the chat's next wait).

use super::db::{Db, Row};
use super::{Acknowledged, StoreError};
use crate::sla::Ack;
use std::collections::HashMap;

/// Acknowledges the open episode of `jid` (in `instance`, or in the one instance where it
/// is open). An acknowledgement that still holds, by the same person, is only extended;
/// anyone else's, or a new one after it ran out, is told to the channels again.
pub(super) async fn acknowledge(
    db: &impl Db,
    instance: Option<&str>,
    jid: &str,
    by: &str,
    at: i64,
    until: i64,
) -> Result<Acknowledged, StoreError> {
    let open: Vec<String> = db
        .rows(
            "SELECT instance FROM episode
             WHERE jid = ?1 AND (CAST(?2 AS TEXT) IS NULL OR instance = ?2)
             ORDER BY instance",
            &[&jid, &instance],
            |r| r.string(0),
        )
        .await?;
    let instance = match open.as_slice() {
        [] => return Ok(Acknowledged::NotOpen),
        [one] => one.clone(),
        _ => return Ok(Acknowledged::Several(open)),
    };
    db.execute(
        "UPDATE generation SET value = value + 1 WHERE instance = ?1",
        &[&instance],
    )
    .await?;
    // One statement, conditional on the episode: if it ended since, nothing is written.
    let written = db
        .execute(
            "INSERT INTO ack (instance, jid, by_name, acked_at, until, paged_at, first_at, told)
             SELECT instance, jid, CAST(?3 AS TEXT), CAST(?4 AS BIGINT), CAST(?5 AS BIGINT),
                    last_fired_at, CAST(?4 AS BIGINT), 0
             FROM episode
             WHERE instance = ?1 AND jid = ?2
             ON CONFLICT (instance, jid) DO UPDATE SET
                told = CASE WHEN ack.by_name = excluded.by_name AND ack.until > excluded.acked_at
                            THEN ack.told ELSE 0 END,
                acked_at = CASE WHEN ack.by_name = excluded.by_name AND ack.until > excluded.acked_at
                                THEN ack.acked_at ELSE excluded.acked_at END,
                until = CASE WHEN ack.until > excluded.until THEN ack.until ELSE excluded.until END,
                by_name = excluded.by_name",
            &[&instance, &jid, &by, &at, &until],
        )
        .await?;
    if written == 0 {
        return Ok(Acknowledged::NotOpen);
    }
    Ok(Acknowledged::Done { instance })
}

/// The acknowledgements of `instance` (every instance with `None`), by (instance, chat).
pub(super) async fn acks(
    db: &impl Db,
    instance: Option<&str>,
) -> Result<HashMap<(String, String), Ack>, StoreError> {
    let mut out = HashMap::new();
    db.each(
        "SELECT instance, jid, by_name, acked_at, until, told FROM ack
         WHERE CAST(?1 AS TEXT) IS NULL OR instance = ?1",
        &[&instance],
        &mut |r: &dyn Row| {
            out.insert(
                (r.string(0)?, r.string(1)?),
                Ack {
                    by: r.string(2)?,
                    at: r.i64(3)?,
                    until: r.i64(4)?,
                    told: r.i64(5)? != 0,
                },
            );
            Ok(())
        },
    )
    .await?;
    Ok(out)
}

/// The chats of `instance` whose acknowledgement the channels have not heard yet: a cycle
/// must look at them even if nothing else changed.
pub(super) async fn untold(db: &impl Db, instance: &str) -> Result<Vec<String>, StoreError> {
    db.rows(
        "SELECT jid FROM ack WHERE instance = ?1 AND told = 0",
        &[&instance],
        |r| r.string(0),
    )
    .await
}

/// Notes that `by`'s acknowledgement made at `at` was told (a newer one is left untold).
pub(super) async fn mark_told(
    db: &impl Db,
    instance: &str,
    jid: &str,
    at: i64,
    by: &str,
) -> Result<u64, StoreError> {
    db.execute(
        "UPDATE ack SET told = 1
         WHERE instance = ?1 AND jid = ?2 AND acked_at = ?3 AND by_name = ?4",
        &[&instance, &jid, &at, &by],
    )
    .await
}

/// The episode ended: its acknowledgement goes (history has kept it).
pub(super) async fn forget(db: &impl Db, instance: &str, jid: &str) -> Result<u64, StoreError> {
    db.execute(
        "DELETE FROM ack WHERE instance = ?1 AND jid = ?2",
        &[&instance, &jid],
    )
    .await
}
