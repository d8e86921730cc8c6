//! What every dashboard handler reaches: the daemon's state, and what the dashboard keeps
//! between requests.

use std::sync::Arc;
use std::time::Instant;

use exai_server::AppState;

pub struct Dashboard {
    pub state: Arc<AppState>,
    /// The latest checks of `exai health` and when they ran (they read disks and databases).
    pub(crate) checks: tokio::sync::Mutex<Option<(Instant, exai_ops::health::Report)>>,
}

impl Dashboard {
    pub fn new(state: Arc<AppState>) -> Dashboard {
        Dashboard {
            state,
            checks: tokio::sync::Mutex::new(None),
        }
    }
}

pub type Ctx = Arc<Dashboard>;
