//! Validation runs, their results and the watcher's grades (component `tracking`): the SQLite
//! tables of `exai validate` with PostgreSQL types, times as TIMESTAMPTZ.

pub(super) const STEPS: &[&str] = &[
    // 1: runs, results and grades.
    "CREATE TABLE test_runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        provider TEXT NOT NULL,
        exai_version TEXT NOT NULL,
        tools_filter TEXT,
        variations_filter TEXT,
        watcher_model TEXT,
        total BIGINT NOT NULL DEFAULT 0,
        passed BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        skipped BIGINT NOT NULL DEFAULT 0,
        errored BIGINT NOT NULL DEFAULT 0,
        pass_rate DOUBLE PRECISION,
        duration_ms DOUBLE PRECISION,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE INDEX test_runs_started ON test_runs (started_at);
    CREATE TABLE test_results (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES test_runs (id) ON DELETE CASCADE,
        tool TEXT NOT NULL,
        variation TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        status TEXT NOT NULL CHECK (status IN ('PASS', 'FAIL', 'SKIP', 'ERROR')),
        duration_ms DOUBLE PRECISION NOT NULL,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        error TEXT,
        output TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX test_results_run ON test_results (run_id);
    CREATE INDEX test_results_tool ON test_results (tool, variation);
    CREATE TABLE test_grades (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        result_id BIGINT NOT NULL REFERENCES test_results (id) ON DELETE CASCADE,
        watcher_model TEXT NOT NULL,
        grade INTEGER CHECK (grade BETWEEN 1 AND 10),
        reasons TEXT NOT NULL,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        error TEXT,
        graded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX test_grades_result ON test_grades (result_id);",
];
