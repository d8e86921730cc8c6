//! Every component's PostgreSQL schema in one list, so `exai db migrate` brings all of them to
//! this build (the daemons also migrate a component when they first use it). Each component
//! keeps its steps in a file of its own here and its version in `exai_schema` (see
//! [`crate::migrate`]).

mod jobs;
mod kb;
mod resources;
mod threads;
mod tracking;

use crate::error::Result;

/// One component's tables: its name in `exai_schema` and its steps, step `i` bringing it to
/// version `i + 1`.
#[derive(Debug)]
pub struct Component {
    pub name: &'static str,
    pub steps: &'static [&'static str],
    /// Its tables need the pgvector extension.
    pub needs_vector: bool,
}

/// The knowledge base.
pub const KB: Component = Component {
    name: "kb",
    steps: kb::STEPS,
    needs_vector: true,
};

/// Conversation threads.
pub const THREADS: Component = Component {
    name: "threads",
    steps: threads::STEPS,
    needs_vector: false,
};

/// Validation runs.
pub const TRACKING: Component = Component {
    name: "tracking",
    steps: tracking::STEPS,
    needs_vector: false,
};

/// Index jobs shared between daemons.
pub const JOBS: Component = Component {
    name: "jobs",
    steps: jobs::STEPS,
    needs_vector: false,
};

/// The daemons' resource samples.
pub const RESOURCES: Component = Component {
    name: "resources",
    steps: resources::STEPS,
    needs_vector: false,
};

/// Every component, in the order `exai db migrate` reports them.
pub const ALL: [&Component; 5] = [&KB, &THREADS, &TRACKING, &JOBS, &RESOURCES];

impl Component {
    /// The version this build writes.
    pub fn known_version(&self) -> i64 {
        self.steps.len() as i64
    }

    /// The version the database is at (0: its tables do not exist yet).
    pub fn version(&self, client: &mut impl postgres::GenericClient) -> Result<i64> {
        crate::migrate::schema_version(client, self.name)
    }

    /// Bring the tables to [`Component::known_version`] (installing pgvector first when they
    /// need it and the role may); `target` names the server in errors. Returns the version
    /// before; a database already current costs one query.
    pub fn migrate(&self, client: &mut postgres::Client, target: &str) -> Result<i64> {
        let before = self.version(client)?;
        if before == self.known_version() {
            return Ok(before);
        }
        if self.needs_vector {
            crate::migrate::ensure_vector(client, target)?;
        }
        crate::migrate::migrate(client, self.name, self.steps)
    }
}
