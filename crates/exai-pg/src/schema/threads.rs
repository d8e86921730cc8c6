//! Conversation threads and their turns (component `threads`).

pub(super) const STEPS: &[&str] = &[
    // 1: threads and their turns.
    "CREATE TABLE threads (
        id TEXT PRIMARY KEY,
        parent_id TEXT,
        tool TEXT NOT NULL,
        title TEXT NOT NULL,
        turns BIGINT NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX threads_updated ON threads (updated_at DESC);
    CREATE INDEX threads_expires ON threads (expires_at);
    CREATE TABLE thread_turns (
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        idx BIGINT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        files JSONB NOT NULL,
        tool TEXT NOT NULL,
        model TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (thread_id, idx)
    );",
    // 2: owners. Threads from before principals belong to the local user.
    "ALTER TABLE threads ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX threads_owner_updated ON threads (owner, updated_at DESC);",
    // 3: what the model call that answered a turn used.
    "ALTER TABLE thread_turns ADD COLUMN tokens_in BIGINT,
        ADD COLUMN tokens_out BIGINT,
        ADD COLUMN cost_usd DOUBLE PRECISION;",
];
