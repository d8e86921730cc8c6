//! Concurrency limits on provider requests: over all providers, per provider and per MCP session.
//! A full limit answers at once with OVER_CAPACITY and a retry hint instead of queueing work that
//! would only time out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::LlmError;

/// How long a client should wait before trying again when a limit is full.
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    global_max: usize,
    per_provider: Mutex<HashMap<String, Arc<Semaphore>>>,
    provider_max: usize,
    per_session: Mutex<HashMap<String, Arc<Semaphore>>>,
    session_max: usize,
}

/// Held while a request is in flight; dropping it frees the slots.
#[derive(Debug)]
pub struct Permit {
    _global: OwnedSemaphorePermit,
    _provider: OwnedSemaphorePermit,
    _session: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(global: usize, per_provider: usize, per_session: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global.max(1))),
            global_max: global.max(1),
            per_provider: Mutex::new(HashMap::new()),
            provider_max: per_provider.max(1),
            per_session: Mutex::new(HashMap::new()),
            session_max: per_session.max(1),
        }
    }

    /// A slot in all three limits, or OVER_CAPACITY naming the one that is full.
    pub fn acquire(&self, provider: &str, session: &str) -> Result<Permit, LlmError> {
        let full = |scope: String, limit: usize| LlmError::OverCapacity {
            scope,
            limit,
            retry_after: RETRY_AFTER,
        };
        let session_sem = semaphore(&self.per_session, session, self.session_max, true);
        let session_permit = session_sem
            .try_acquire_owned()
            .map_err(|_| full(format!("session {session}"), self.session_max))?;
        let provider_sem = semaphore(&self.per_provider, provider, self.provider_max, false);
        let provider_permit = provider_sem
            .try_acquire_owned()
            .map_err(|_| full(format!("provider {provider}"), self.provider_max))?;
        let global_permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| full("exai".into(), self.global_max))?;
        Ok(Permit {
            _global: global_permit,
            _provider: provider_permit,
            _session: session_permit,
        })
    }

    /// Requests in flight over all providers.
    pub fn in_flight(&self) -> usize {
        self.global_max - self.global.available_permits()
    }
}

fn semaphore(
    map: &Mutex<HashMap<String, Arc<Semaphore>>>,
    key: &str,
    max: usize,
    prune: bool,
) -> Arc<Semaphore> {
    let Ok(mut map) = map.lock() else {
        return Arc::new(Semaphore::new(max));
    };
    if prune && map.len() > 1024 {
        // Sessions come and go; forget the idle ones.
        map.retain(|_, s| s.available_permits() < max);
    }
    map.entry(key.to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(max)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_answers_over_capacity() {
        let limits = Limits::new(3, 2, 1);
        let a = limits.acquire("kimi", "s1").unwrap();
        let e = limits.acquire("kimi", "s1").unwrap_err();
        assert!(e.to_string().contains("session s1"), "{e}");
        assert_eq!(e.kind(), "OVER_CAPACITY");
        let b = limits.acquire("kimi", "s2").unwrap();
        let e = limits.acquire("kimi", "s3").unwrap_err();
        assert!(e.to_string().contains("provider kimi"), "{e}");
        let c = limits.acquire("glm", "s3").unwrap();
        let e = limits.acquire("glm", "s4").unwrap_err();
        assert!(e.to_string().contains("exai"), "{e}");
        assert_eq!(limits.in_flight(), 3);
        drop((a, b, c));
        assert_eq!(limits.in_flight(), 0);
        assert!(limits.acquire("kimi", "s1").is_ok());
    }
}
