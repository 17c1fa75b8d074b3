//! The PostgreSQL backend (12 or newer), for two or more daemons sharing one database
//! (docs/spec.md section 10). The statements and migrations are the concern modules' and
//! `schema`'s, rendered in PostgreSQL's dialect; here are the pool, transactions, the
//! database clock and binding. Migrations run under an advisory lock so two daemons
//! starting together do not both migrate.
//!
//! tokio-postgres with a deadpool pool: async all the way (no blocking pool), a statement
//! cache per connection, and broken connections replaced on the next checkout, which is
//! what lets a daemon ride out a database restart. TLS goes through rustls (with the
//! webpki roots) when the URL asks for it (`sslmode=require`); the URL's password is a
//! secret and never reaches an error.

use super::db::{Db, Each, Row, Value};
use super::dialect::Dialect;
use super::{DbClock, SCHEMA_VERSION, StoreError, schema};
use crate::secret::{Redactor, Secret};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// Any number; the same for every inbox-sla, so migrations never run twice at once.
const MIGRATION_LOCK: i64 = 0x1_9b0c_5a1a;

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// Whose clock judges leases and claims: the server's, or an injected one.
    clock: DbClock,
    /// "host:port/dbname", for messages.
    place: String,
    /// Scrubs the URL's password from driver errors.
    redactor: Redactor,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Postgres({})", self.place)
    }
}

impl Postgres {
    /// Connects, and creates or migrates the schema.
    pub async fn open(url: &Secret, clock: DbClock) -> Result<Postgres, StoreError> {
        let redactor = Redactor::new([url]);
        let open_err = |place: &str, message: String| StoreError::Open {
            place: place.to_string(),
            message: redactor.redact(&message),
        };
        let config: tokio_postgres::Config = url.expose().parse().map_err(|e| {
            open_err(
                "PostgreSQL",
                format!("store.url is not a PostgreSQL URL like postgres://user@host/db ({e})"),
            )
        })?;
        let place = describe(&config);
        let mut config = config;
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("inbox-sla");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            )
        };
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| open_err(&place, format!("cannot set up the connection pool: {e}")))?;
        let store = Postgres {
            pool,
            clock,
            place,
            redactor: redactor.clone(),
        };
        store
            .migrate()
            .await
            .map_err(|e| open_err(&store.place, e.to_string()))?;
        Ok(store)
    }

    pub fn describe(&self) -> String {
        format!("PostgreSQL {}", self.place)
    }

    /// The value for [`Dialect::db_now`]'s parameter: `None` lets the server's clock judge.
    fn now_param(&self) -> Option<i64> {
        match &self.clock {
            DbClock::Server => None,
            DbClock::Injected(clock) => Some(clock.now_ms()),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres(format!(
            "{}: {}",
            self.place,
            self.redactor.redact(&e.to_string())
        ))
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| self.error(format!("cannot reach the database: {}", pool_error(&e))))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS inbox_sla_schema (version BIGINT NOT NULL);
             INSERT INTO inbox_sla_schema (version)
                SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM inbox_sla_schema);",
        )
        .await
        .map_err(|e| self.error(e))?;
        let version: i64 = tx
            .query_one("SELECT version FROM inbox_sla_schema", &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Open {
                place: self.place.clone(),
                message: format!(
                    "schema version {version} is newer than this inbox-sla supports ({SCHEMA_VERSION}); \
                     upgrade inbox-sla instead of starting over"
                ),
            });
        }
        if version == 0 {
            let foreign: i64 = tx
                .query_one(
                    "SELECT count(*) FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name IN ('episode', 'outbox')",
                    &[],
                )
                .await
                .map_err(|e| self.error(e))?
                .get(0);
            if foreign > 0 {
                return Err(StoreError::Open {
                    place: self.place.clone(),
                    message: "holds episode or outbox tables but no inbox-sla schema version; \
                              it is not an inbox-sla store"
                        .into(),
                });
            }
        }
        for (from, sql) in schema::migrations(Dialect::Postgres)
            .iter()
            .enumerate()
            .skip(version as usize)
        {
            tx.batch_execute(sql)
                .await
                .map_err(|e| self.error(format!("migration to schema {} failed: {e}", from + 1)))?;
            tx.execute(
                "UPDATE inbox_sla_schema SET version = $1",
                &[&((from + 1) as i64)],
            )
            .await
            .map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// A pooled connection, each statement on its own.
    pub(super) async fn conn(&self) -> Result<Conn<'_, deadpool_postgres::Client>, StoreError> {
        Ok(Conn {
            store: self,
            client: self.client().await?,
        })
    }

    /// A transaction on `client`: with `read`, one consistent view across several reads
    /// (repeatable read, read-only).
    pub(super) async fn transaction<'c>(
        &'c self,
        client: &'c mut deadpool_postgres::Client,
        read: bool,
    ) -> Result<Conn<'c, deadpool_postgres::Transaction<'c>>, StoreError> {
        let mut builder = client.build_transaction();
        if read {
            builder = builder
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true);
        }
        Ok(Conn {
            store: self,
            client: builder.start().await.map_err(|e| self.error(e))?,
        })
    }
}

/// A connection or transaction of a [`Postgres`] store, for the concern modules.
pub(super) struct Conn<'s, C> {
    store: &'s Postgres,
    client: C,
}

impl Conn<'_, deadpool_postgres::Transaction<'_>> {
    /// Commits, handing back what the transaction produced.
    pub(super) async fn commit<R>(self, out: R) -> Result<R, StoreError> {
        self.client
            .commit()
            .await
            .map_err(|e| self.store.error(e))?;
        Ok(out)
    }
}

impl<C: GenericClient> Conn<'_, C> {
    /// Prepares (once per connection) the statement in PostgreSQL's spelling.
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        self.client
            .prepare_cached(&Dialect::Postgres.render(sql))
            .await
            .map_err(|e| self.store.error(e))
    }
}

fn bind<'a>(params: &[&'a dyn Value]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p.postgres()).collect()
}

impl<C: GenericClient> Db for Conn<'_, C> {
    const DIALECT: Dialect = Dialect::Postgres;

    fn now_param(&self, _caller_ms: i64) -> Option<i64> {
        self.store.now_param()
    }

    async fn execute(&self, sql: &str, params: &[&dyn Value]) -> Result<u64, StoreError> {
        let stmt = self.prepare(sql).await?;
        self.client
            .execute(&stmt, &bind(params))
            .await
            .map_err(|e| self.store.error(e))
    }

    async fn each(&self, sql: &str, params: &[&dyn Value], f: Each<'_>) -> Result<(), StoreError> {
        let stmt = self.prepare(sql).await?;
        let rows = self
            .client
            .query(&stmt, &bind(params))
            .await
            .map_err(|e| self.store.error(e))?;
        for r in &rows {
            f(r)?;
        }
        Ok(())
    }
}

/// A column of the wrong type: the schema is not what this build wrote.
fn column_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(format!("a column is unreadable: {e}"))
}

impl Row for tokio_postgres::Row {
    fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get(i).map_err(column_error)
    }

    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i).map_err(column_error)
    }

    fn bool(&self, i: usize) -> Result<bool, StoreError> {
        self.try_get(i).map_err(column_error)
    }

    fn str(&self, i: usize) -> Result<&str, StoreError> {
        self.try_get(i).map_err(column_error)
    }

    fn opt_string(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(column_error)
    }

    /// PostgreSQL has no unsigned type: a BIGINT, clamped.
    fn u32(&self, i: usize) -> Result<u32, StoreError> {
        Ok(self.i64(i)?.clamp(0, u32::MAX as i64) as u32)
    }
}

/// "host:port/dbname" without user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("{host}:{port}/{db}")
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Timeout(_) => "timed out".into(),
        PoolError::Backend(b) => crate::with_causes(b.to_string(), b),
        other => other.to_string(),
    }
}
