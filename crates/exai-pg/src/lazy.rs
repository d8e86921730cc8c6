//! Opening on first use, for whatever a database is needed for (a pool and its tables, the
//! knowledge base): construction does no I/O, so it may happen on an async worker and a database
//! that is down at start does not stop the server; a failure to open is repeated to callers for
//! [`REOPEN_AFTER`] instead of each of them waiting on the dead server again, then tried anew, so
//! the server recovers once the database is back.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exai_core::config::DatabaseConfig;

use crate::error::PgError;
use crate::pool::{Conn, Pool};
use crate::schema::Component;

/// How long a failure to open is reported as is before the next attempt.
pub const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// Why a value could not be had.
#[derive(Debug)]
pub enum OpenError<E> {
    /// This call tried, and opening failed.
    Failed(E),
    /// An attempt less than [`REOPEN_AFTER`] ago failed, for this reason; none was made now.
    Recently(String),
}

impl<E: fmt::Display> fmt::Display for OpenError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Failed(e) => e.fmt(f),
            OpenError::Recently(reason) => f.write_str(reason),
        }
    }
}

/// A value opened on first use, or the last failure to open it and when. It holds no lock: the
/// owner keeps it behind the mutex that suits its callers (a blocking one for blocking stores,
/// an async one for the server's knowledge base), held while opening so concurrent first calls
/// open once.
pub struct Reopening<T> {
    value: Option<T>,
    failed: Option<(Instant, String)>,
}

impl<T> Default for Reopening<T> {
    fn default() -> Self {
        Reopening {
            value: None,
            failed: None,
        }
    }
}

impl<T: Clone> Reopening<T> {
    /// Already open.
    pub fn opened(value: T) -> Self {
        Reopening {
            value: Some(value),
            failed: None,
        }
    }

    /// The value, if it was opened.
    pub fn get(&self) -> Option<T> {
        self.value.clone()
    }

    /// The value, opening it with `open` unless that failed less than [`REOPEN_AFTER`] ago.
    pub fn get_or_open<E: fmt::Display>(
        &mut self,
        open: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, OpenError<E>> {
        if let Some(ready) = self.ready() {
            return ready;
        }
        self.settle(open())
    }

    /// [`Reopening::get_or_open`] for an opening that awaits.
    pub async fn get_or_open_async<E, F>(
        &mut self,
        open: impl FnOnce() -> F,
    ) -> Result<T, OpenError<E>>
    where
        E: fmt::Display,
        F: Future<Output = Result<T, E>>,
    {
        if let Some(ready) = self.ready() {
            return ready;
        }
        let opened = open().await;
        self.settle(opened)
    }

    /// The answer without opening: the value, or a recent failure.
    fn ready<E>(&self) -> Option<Result<T, OpenError<E>>> {
        if let Some(value) = &self.value {
            return Some(Ok(value.clone()));
        }
        match &self.failed {
            Some((at, reason)) if at.elapsed() < REOPEN_AFTER => {
                Some(Err(OpenError::Recently(reason.clone())))
            }
            _ => None,
        }
    }

    fn settle<E: fmt::Display>(&mut self, opened: Result<T, E>) -> Result<T, OpenError<E>> {
        match opened {
            Ok(value) => {
                self.value = Some(value.clone());
                self.failed = None;
                Ok(value)
            }
            Err(e) => {
                self.failed = Some((Instant::now(), e.to_string()));
                Err(OpenError::Failed(e))
            }
        }
    }
}

/// Why [`LazyPool`] gave no connection.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error(transparent)]
    Pg(#[from] PgError),
    /// Opening failed less than [`REOPEN_AFTER`] ago, for this reason.
    #[error("{0}")]
    Recently(String),
    /// A thread panicked while opening the pool.
    #[error("the PostgreSQL pool is unavailable (a previous error poisoned it)")]
    Poisoned,
}

/// A store's PostgreSQL: a pool given open, or the process's shared pool of `database.*`
/// opened on first use (with the start-up retries) and `component`'s tables migrated then.
pub struct LazyPool {
    source: Source,
}

enum Source {
    Ready(Arc<Pool>),
    Config {
        config: DatabaseConfig,
        component: &'static Component,
        state: Mutex<Reopening<Arc<Pool>>>,
    },
}

impl LazyPool {
    /// A pool already open (its tables migrated by the caller).
    pub fn ready(pool: Arc<Pool>) -> LazyPool {
        LazyPool {
            source: Source::Ready(pool),
        }
    }

    /// The pool of `config`, opened and `component` migrated on first use; no I/O now.
    pub fn from_config(config: DatabaseConfig, component: &'static Component) -> LazyPool {
        LazyPool {
            source: Source::Config {
                config,
                component,
                state: Mutex::default(),
            },
        }
    }

    /// The pool, opening it now if it is not yet (blocking).
    pub fn pool(&self) -> Result<Arc<Pool>, LazyError> {
        match &self.source {
            Source::Ready(pool) => Ok(pool.clone()),
            Source::Config {
                config,
                component,
                state,
            } => {
                let mut state = state.lock().map_err(|_| LazyError::Poisoned)?;
                state
                    .get_or_open(|| open(config, component))
                    .map_err(|e| match e {
                        OpenError::Failed(e) => LazyError::Pg(e),
                        OpenError::Recently(reason) => LazyError::Recently(reason),
                    })
            }
        }
    }

    /// A connection (blocking; opens the pool first if needed).
    pub fn get(&self) -> Result<Conn, LazyError> {
        Ok(self.pool()?.get()?)
    }
}

fn open(config: &DatabaseConfig, component: &Component) -> Result<Arc<Pool>, PgError> {
    let pool = crate::pool::from_config(config)?.ok_or_else(|| PgError::Url {
        url: String::new(),
        reason: "database.url is empty".into(),
    })?;
    let mut conn = pool.get()?;
    component.migrate(&mut conn, pool.target())?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_failure_is_repeated_then_retried() {
        let mut slot: Reopening<u32> = Reopening::default();
        let mut attempts = 0;
        let first = slot.get_or_open(|| {
            attempts += 1;
            Err::<u32, _>("down")
        });
        assert!(matches!(first, Err(OpenError::Failed("down"))));
        let again = slot.get_or_open(|| {
            attempts += 1;
            Ok::<_, &str>(7)
        });
        assert!(matches!(again, Err(OpenError::Recently(ref r)) if r == "down"));
        assert_eq!(attempts, 1);
        slot.failed = Some((
            Instant::now().checked_sub(REOPEN_AFTER).unwrap(),
            "down".into(),
        ));
        assert_eq!(slot.get_or_open(|| Ok::<_, &str>(7)).unwrap(), 7);
        assert_eq!(slot.get(), Some(7));
        assert_eq!(slot.get_or_open(|| Err::<u32, _>("unused")).unwrap(), 7);
    }
}
