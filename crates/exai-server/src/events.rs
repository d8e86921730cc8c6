//! What happens inside the server, for whoever watches live (the daemon's dashboard): a
//! broadcast channel that costs nothing while nobody listens, and drops the oldest events for a
//! watcher that falls behind rather than slowing the calls that publish them.

use std::sync::Arc;

use exai_core::activity::ActivityRecord;
use tokio::sync::broadcast;

/// Events a slow watcher may lag behind before it loses the oldest.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A tool call finished; the record is the activity log's (no arguments, no secrets).
    Call(Arc<ActivityRecord>),
}

#[derive(Debug)]
pub struct Events {
    sender: broadcast::Sender<ServerEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// Whether anyone listens; publishers skip building an event otherwise.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn publish(&self, event: ServerEvent) {
        // No receiver is not an error: the event simply has no audience.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.sender.subscribe()
    }
}
