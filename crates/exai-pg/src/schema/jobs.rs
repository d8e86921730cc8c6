//! Index jobs shared by the daemons on one database (component `jobs`): who runs which source,
//! its progress, and a cancel request another daemon may set.

pub(super) const STEPS: &[&str] = &[
    // 1: jobs, their progress and the daemon running each.
    "CREATE TABLE index_jobs (
        job_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('running', 'done', 'failed', 'cancelled', 'lost')),
        phase TEXT NOT NULL,
        progress JSONB NOT NULL DEFAULT '{}',
        report JSONB,
        error TEXT,
        owner TEXT NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT false,
        started_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX index_jobs_running ON index_jobs (source) WHERE state = 'running';
    CREATE INDEX index_jobs_updated ON index_jobs (updated_at DESC);",
    // 2: the principal that started the job; earlier jobs are the local user's.
    "ALTER TABLE index_jobs ADD COLUMN principal TEXT NOT NULL DEFAULT 'local';",
];
