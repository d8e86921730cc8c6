//! What every dashboard handler reaches: the daemon's state, and what the dashboard keeps
//! between requests.

use std::sync::Arc;
use std::time::Instant;

use exai_server::AppState;

pub struct Dashboard {
    pub state: Arc<AppState>,
    /// The latest checks of `exai health` and when they ran (they read disks and databases).
    pub(crate) checks: tokio::sync::Mutex<Option<(Instant, exai_ops::health::Report)>>,
    /// The last day of calls, read from the activity log and kept up to date by each request.
    pub(crate) activity: crate::activity::Calls,
    /// The validation run started from the dashboard, and its `validation` topic.
    pub(crate) validation: crate::validation::Runner,
    /// The database action running now, and the backups checked so far.
    pub(crate) maintenance: crate::maintenance::Maintenance,
}

impl Dashboard {
    pub fn new(state: Arc<AppState>) -> Dashboard {
        Dashboard {
            state,
            checks: tokio::sync::Mutex::new(None),
            activity: Default::default(),
            validation: Default::default(),
            maintenance: Default::default(),
        }
    }
}

pub type Ctx = Arc<Dashboard>;
