//! The daemons' resource samples (component `resources`): resident memory, CPU time, open files,
//! free disk and database sizes, one row a sample interval per daemon (`instance`), kept for
//! `ops.resource_history_days`.

pub(super) const STEPS: &[&str] = &[
    // 1: one row per sample.
    "CREATE TABLE resource_samples (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time TIMESTAMPTZ NOT NULL,
        instance TEXT NOT NULL,
        pid BIGINT NOT NULL,
        process_started_at TIMESTAMPTZ NOT NULL,
        interval_secs DOUBLE PRECISION NOT NULL,
        rss_bytes BIGINT,
        cpu_seconds DOUBLE PRECISION,
        open_fds BIGINT,
        max_fds BIGINT,
        host_memory_total_bytes BIGINT,
        host_memory_available_bytes BIGINT,
        disk_free_bytes BIGINT,
        disk_total_bytes BIGINT,
        db_bytes JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX resource_samples_time ON resource_samples (time);
    CREATE INDEX resource_samples_instance_time ON resource_samples (instance, time);",
];
