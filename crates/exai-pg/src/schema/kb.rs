//! The knowledge base's tables (component `kb`): sources, documents, chunks with their weighted
//! `tsvector`, and one pgvector embedding per distinct chunk text. The HNSW index is not a step:
//! the store builds it once it knows the embedding dimension. Step 2: untrusted spans flagged per
//! document, by kind (the same columns as SQLite's schema version 2).

pub(super) const STEPS: &[&str] = &[
    r#"
CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO kb_meta(key, value) VALUES ('generation', '0');
CREATE TABLE kb_sources (
    name TEXT PRIMARY KEY,
    roots JSONB NOT NULL DEFAULT '[]',
    technology TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE kb_documents (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL REFERENCES kb_sources(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    uri TEXT,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    technology TEXT NOT NULL,
    category TEXT NOT NULL,
    hash TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    indexed_at TEXT NOT NULL,
    UNIQUE (source, path)
);
CREATE INDEX kb_documents_by_filter ON kb_documents(source, technology, category);
CREATE TABLE kb_chunks (
    id BIGSERIAL PRIMARY KEY,
    doc_id BIGINT NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    section TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    doc_type TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX kb_chunks_by_doc ON kb_chunks(doc_id, position);
CREATE INDEX kb_chunks_by_hash ON kb_chunks(text_hash);
CREATE INDEX kb_chunks_tsv ON kb_chunks USING GIN (tsv);
CREATE TABLE kb_embeddings (
    text_hash TEXT PRIMARY KEY,
    vector VECTOR NOT NULL
);
"#,
    r#"
ALTER TABLE kb_documents
    ADD COLUMN flagged_hidden BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN flagged_invisible BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN flagged_comment BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN flagged_instruction BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE kb_sources ADD COLUMN origin JSONB NOT NULL DEFAULT '{}';
CREATE TABLE kb_fetched_pages (
    source TEXT NOT NULL REFERENCES kb_sources(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    path TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    etag TEXT,
    last_modified TEXT,
    hash TEXT,
    links JSONB NOT NULL DEFAULT '[]',
    depth INTEGER NOT NULL DEFAULT 0,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source, url)
);
"#,
];
