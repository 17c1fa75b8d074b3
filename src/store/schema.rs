//! The schema, defined once: one list of migrations, each rendered for the backend's
//! column types ([`Dialect::schema`]). Version N means the same on both backends; how a
//! backend records its version (and tells a foreign or newer store) is its own business.

use super::dialect::Dialect;

/// The schema this build writes. Migrations run from the store's version up to this.
pub const SCHEMA_VERSION: i64 = 7;

/// One step: what both backends run, then what only SQLite runs.
struct Migration {
    both: &'static str,
    sqlite: &'static str,
}

const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [
    // 0 -> 1
    Migration {
        both: "CREATE TABLE episode (
        instance TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        started_at {int} NOT NULL,
        unread {int},
        last_id TEXT,
        last_body TEXT,
        last_ts {int},
        last_media {bool} NOT NULL DEFAULT {false},
        has_last {bool} NOT NULL DEFAULT {false},
        tiers_fired {int} NOT NULL DEFAULT 0,
        last_fired_at {int},
        nudged {bool} NOT NULL DEFAULT {false},
        PRIMARY KEY (instance, jid)
    ){without_rowid};
    CREATE TABLE outbox (
        id {serial} PRIMARY KEY,
        created_at {int} NOT NULL,
        instance TEXT NOT NULL,
        channel TEXT NOT NULL,
        status TEXT NOT NULL,
        document TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts {int} NOT NULL DEFAULT 0,
        next_attempt_ms {int} NOT NULL,
        last_error TEXT,
        done_at {int}
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
    CREATE TABLE mute (
        jid TEXT PRIMARY KEY,
        until {int} NOT NULL,
        reason TEXT,
        created_at {int} NOT NULL
    );
    CREATE TABLE source (
        instance TEXT PRIMARY KEY,
        failing_since {int},
        last_error TEXT,
        blind {bool} NOT NULL DEFAULT {false}
    );",
        sqlite: "",
    },
    // 1 -> 2: a per-instance generation, bumped by every cycle that writes, so that two
    // processes evaluating the same episodes cannot both commit (and both page).
    Migration {
        both: "CREATE TABLE generation (
        instance TEXT PRIMARY KEY,
        value {int} NOT NULL
    ){without_rowid};",
        sqlite: "",
    },
    // 2 -> 3: tiers known by their `after` (NULL `fired`: the old count in tiers_fired,
    // converted by the engine), who was told, confirmed absence, the high-water mark,
    // outbox claims, instance leases, and closed episodes kept for reports.
    Migration {
        both: "ALTER TABLE episode ADD COLUMN fired TEXT;
    ALTER TABLE episode ADD COLUMN notified TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE episode ADD COLUMN missing {int} NOT NULL DEFAULT 0;
    ALTER TABLE episode ADD COLUMN fingerprint {int} NOT NULL DEFAULT 0;
    ALTER TABLE source ADD COLUMN last_ok_at {int};
    ALTER TABLE source ADD COLUMN complete_chats {int};
    ALTER TABLE outbox ADD COLUMN owner TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until_ms {int};
    CREATE INDEX outbox_channel ON outbox (channel, state, next_attempt_ms);
    CREATE TABLE lease (
        instance TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ms {int} NOT NULL,
        fence {int} NOT NULL
    ){without_rowid};
    CREATE TABLE history (
        id {serial} PRIMARY KEY,
        instance TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        started_at {int} NOT NULL,
        ended_at {int} NOT NULL,
        wall_seconds {int} NOT NULL,
        business_seconds {int} NOT NULL,
        fired TEXT NOT NULL,
        notified TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX history_ended ON history (ended_at);",
        sqlite: "",
    },
    // 3 -> 4: when an unchanged chat's episode can next fall due (until then a cycle does
    // not read it). SQLite also moves outbox documents to their own table: it rewrites a
    // whole row on UPDATE, so claiming and acknowledging a large digest (thousands of
    // chats, megabytes) rewrote it twice; the states now change beside it. (PostgreSQL
    // keeps large values out of line and an UPDATE leaves them be.)
    Migration {
        both: "ALTER TABLE episode ADD COLUMN quiet_until {int} NOT NULL DEFAULT 0;",
        sqlite: "CREATE TABLE outbox_document (
        id INTEGER PRIMARY KEY,
        document TEXT NOT NULL
    );
    INSERT INTO outbox_document (id, document) SELECT id, document FROM outbox;
    ALTER TABLE outbox DROP COLUMN document;
    CREATE TRIGGER outbox_document_follows AFTER DELETE ON outbox BEGIN
        DELETE FROM outbox_document WHERE id = old.id;
    END;",
    },
    // 4 -> 5: which reply-mode policy the high-water mark belongs to, since when the
    // overviews have been short, and the index that keeps a channel's notices of one
    // instance in order.
    Migration {
        both: "ALTER TABLE source ADD COLUMN mark_policy {int};
    ALTER TABLE source ADD COLUMN short_since {int};
    ALTER TABLE outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';
    CREATE INDEX outbox_open_order ON outbox (channel, instance, subject, id)
        WHERE state IN ('pending', 'claimed');",
        sqlite: "",
    },
    // 5 -> 6: the nodes of an HA group, each alive while it renews its row: who shares
    // the instances.
    Migration {
        both: "CREATE TABLE node (
        name TEXT PRIMARY KEY,
        expires_ms {int} NOT NULL
    );",
        sqlite: "",
    },
    // 6 -> 7: acknowledgements (who said "I'm on it" for an open episode, when, until
    // when no tier fires; when it was first acknowledged and the page that answered), and
    // what history keeps of them.
    Migration {
        both: "CREATE TABLE ack (
        instance TEXT NOT NULL,
        jid TEXT NOT NULL,
        by_name TEXT NOT NULL,
        acked_at {int} NOT NULL,
        until {int} NOT NULL,
        paged_at {int},
        first_at {int} NOT NULL,
        told {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (instance, jid)
    ){without_rowid};
    ALTER TABLE history ADD COLUMN last_fired_at {int};
    ALTER TABLE history ADD COLUMN acked_by TEXT;
    ALTER TABLE history ADD COLUMN acked_at {int};
    ALTER TABLE history ADD COLUMN ack_paged_at {int};",
        sqlite: "",
    },
];

/// The migrations in `dialect`: element N takes a store from version N to N + 1.
pub(crate) fn migrations(dialect: Dialect) -> Vec<String> {
    MIGRATIONS
        .iter()
        .map(|m| {
            let mut sql = dialect.schema(m.both);
            if dialect == Dialect::Sqlite && !m.sqlite.is_empty() {
                sql.push('\n');
                sql.push_str(m.sqlite);
            }
            sql
        })
        .collect()
}
