//! A small blocking connection pool. Connections that died (server restarted, network cut)
//! are dropped and replaced; one idle for a while is pinged before it is handed out, so the
//! first call after the database comes back does not fail on a stale connection.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{PgError, Result};
use crate::url::DatabaseUrl;

/// Pool settings (from `database.*` in the configuration).
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections at most.
    pub max_size: usize,
    /// `statement_timeout` of every connection (0: none).
    pub statement_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long [`Pool::get`] waits for a free connection.
    pub acquire_timeout: Duration,
    /// How long [`Pool::open`] keeps retrying (with backoff) while the server does not answer.
    pub start_retry: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            start_retry: Duration::from_secs(30),
        }
    }
}

struct Idle {
    client: Client,
    since: Instant,
}

struct State {
    idle: Vec<Idle>,
    open: usize,
}

/// Connections to one database.
pub struct Pool {
    url: DatabaseUrl,
    tls: Option<MakeRustlsConnect>,
    options: PoolOptions,
    state: Mutex<State>,
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.url.redacted())
            .field("max_size", &self.options.max_size)
            .finish()
    }
}

/// Idle connections older than this are pinged before use.
const PING_AFTER: Duration = Duration::from_secs(2);

impl Pool {
    /// Parse `url` and connect once, retrying with backoff for `options.start_retry` while the
    /// server cannot be reached (a wrong password or database fails at once).
    pub fn open(url: &str, options: PoolOptions) -> Result<Arc<Pool>> {
        let pool = Pool::new(url, options)?;
        pool.warm()?;
        Ok(pool)
    }

    /// Parse `url` and set the pool up without connecting: the first [`Pool::get`] (or
    /// [`Pool::warm`]) connects.
    pub fn new(url: &str, options: PoolOptions) -> Result<Arc<Pool>> {
        let mut url = DatabaseUrl::parse(url)?;
        url.config.connect_timeout(options.connect_timeout);
        if !options.statement_timeout.is_zero() {
            let mine = format!(
                "-c statement_timeout={}",
                options.statement_timeout.as_millis()
            );
            let all = match url.config.get_options() {
                Some(given) if !given.is_empty() => format!("{given} {mine}"),
                _ => mine,
            };
            url.config.options(&all);
        }
        let tls = url.tls()?.map(MakeRustlsConnect::new);
        Ok(Arc::new(Pool {
            url,
            tls,
            options,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }))
    }

    /// Connect once and keep the connection idle, retrying with backoff for
    /// `options.start_retry` while the server cannot be reached.
    pub fn warm(&self) -> Result<()> {
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut delay = Duration::from_millis(250);
        loop {
            attempts += 1;
            match self.connect() {
                Ok(client) => {
                    if let Ok(mut s) = self.state.lock() {
                        s.open += 1;
                        s.idle.push(Idle {
                            client,
                            since: Instant::now(),
                        });
                    }
                    self.freed.notify_one();
                    if attempts > 1 {
                        tracing::info!(target = self.target(), attempts, "PostgreSQL answers");
                    }
                    return Ok(());
                }
                Err(e) => {
                    let retry =
                        is_unreachable(&e) && started.elapsed() + delay < self.options.start_retry;
                    if !retry {
                        return Err(PgError::Connect {
                            target: self.target().to_string(),
                            attempts,
                            waited_ms: started.elapsed().as_millis() as u64,
                            reason: crate::error::describe(&e),
                        });
                    }
                    tracing::warn!(
                        target = self.target(),
                        attempt = attempts,
                        "PostgreSQL does not answer ({}); retrying in {} ms",
                        crate::error::describe(&e),
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The URL with its password redacted.
    pub fn target(&self) -> &str {
        self.url.redacted()
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.url.config.connect(tls.clone()),
            None => self.url.config.connect(NoTls),
        }
    }

    /// A connection: an idle one (pinged if it idled a while), else a new one while fewer
    /// than `max_size` are open, else the first one freed within `acquire_timeout`.
    pub fn get(self: &Arc<Self>) -> Result<Conn> {
        let started = Instant::now();
        let poisoned = || PgError::PoolExhausted {
            target: self.target().to_string(),
            max: self.options.max_size,
            waited_ms: 0,
        };
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        loop {
            while let Some(mut idle) = state.idle.pop() {
                if idle.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                if idle.since.elapsed() > PING_AFTER {
                    drop(state);
                    let alive = idle.client.is_valid(self.options.connect_timeout).is_ok();
                    if alive {
                        return Ok(Conn::new(idle.client, self.clone()));
                    }
                    state = self.state.lock().map_err(|_| poisoned())?;
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn::new(idle.client, self.clone()));
            }
            if state.open < self.options.max_size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Conn::new(client, self.clone())),
                    Err(e) => {
                        if let Ok(mut s) = self.state.lock() {
                            s.open -= 1;
                        }
                        self.freed.notify_one();
                        Err(PgError::Connect {
                            target: self.target().to_string(),
                            attempts: 1,
                            waited_ms: started.elapsed().as_millis() as u64,
                            reason: crate::error::describe(&e),
                        })
                    }
                };
            }
            let left = self
                .options
                .acquire_timeout
                .saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(PgError::PoolExhausted {
                    target: self.target().to_string(),
                    max: self.options.max_size,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .map_err(|_| poisoned())?
                .0;
        }
    }

    fn put_back(&self, client: Client) {
        if let Ok(mut s) = self.state.lock() {
            if client.is_closed() {
                s.open -= 1;
            } else {
                s.idle.push(Idle {
                    client,
                    since: Instant::now(),
                });
            }
        }
        self.freed.notify_one();
    }

    /// Connections open now (idle or in use), for health and metrics.
    pub fn open_connections(&self) -> usize {
        self.state.lock().map(|s| s.open).unwrap_or(0)
    }
}

/// Server unreachable (refused, timed out, DNS, reset, starting up), as opposed to a refusal
/// that retrying cannot fix (bad password, no such database).
fn is_unreachable(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        // 57P03: the database system is starting up / shutting down.
        Some(db) => db.code().code() == "57P03",
        None => true,
    }
}

/// A pooled connection; goes back to the pool when dropped (or away, if it died).
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
}

impl Conn {
    fn new(client: Client, pool: Arc<Pool>) -> Conn {
        Conn {
            client: Some(client),
            pool,
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present from construction until drop.
        match &self.client {
            Some(c) => c,
            None => unreachable!("a pooled connection is present until dropped"),
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        match &mut self.client {
            Some(c) => c,
            None => unreachable!("a pooled connection is present until dropped"),
        }
    }
}

impl Drop for Pool {
    /// Closing a connection blocks (the client drives its own runtime to say goodbye), which
    /// panics on an async worker: when the last handle goes there, the idle connections close
    /// on a thread of their own.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let state = match self.state.get_mut() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let idle = std::mem::take(&mut state.idle);
        if !idle.is_empty() {
            std::thread::spawn(move || drop(idle));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.put_back(client);
        }
    }
}

impl PoolOptions {
    /// The pool settings of `database.*`.
    pub fn from_config(db: &exai_core::config::DatabaseConfig) -> PoolOptions {
        PoolOptions {
            max_size: db.pool_size.max(1) as usize,
            statement_timeout: Duration::from_secs_f64(db.statement_timeout_secs),
            start_retry: Duration::from_secs_f64(db.connect_retry_secs),
            ..Default::default()
        }
    }
}

static SHARED: Mutex<Vec<(String, Arc<Pool>)>> = Mutex::new(Vec::new());

/// The process's one pool for `url`: the knowledge base, threads, tracking and jobs share it.
/// The first call connects, with the start-up retries; when that fails the pool stays, and
/// later calls return it at once (its connections then fail fast until the server is back).
pub fn shared(url: &str, options: PoolOptions) -> Result<Arc<Pool>> {
    let pool = {
        let mut pools = SHARED.lock().map_err(|_| PgError::Url {
            url: crate::url::redact(url),
            reason: "the pool registry was poisoned".into(),
        })?;
        if let Some((_, p)) = pools.iter().find(|(u, _)| u == url) {
            return Ok(p.clone());
        }
        let pool = Pool::new(url, options)?;
        pools.push((url.to_string(), pool.clone()));
        pool
    };
    pool.warm()?;
    Ok(pool)
}

/// The shared pool of the configured PostgreSQL, `None` when `database.url` is empty.
pub fn from_config(db: &exai_core::config::DatabaseConfig) -> Result<Option<Arc<Pool>>> {
    match db.postgres_url() {
        Some(url) => shared(url, PoolOptions::from_config(db)).map(Some),
        None => Ok(None),
    }
}
