//! Export and import on either backend, for `exai db copy`: documents with their chunks and
//! vectors page by page in a stable order, and a clean slate to copy into.

use crate::error::Result;
use crate::store::{ChunkRecord, DocRecord, Store};

impl Store {
    /// Documents with an id above `after`, in id order (insertion order), `limit` at most.
    pub fn documents_page(&self, after: i64, limit: usize) -> Result<Vec<DocRecord>> {
        self.backend.documents_page(after, limit)
    }

    /// Every chunk of these documents, by document and position.
    pub fn chunks_of_documents(&self, doc_ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        self.backend.chunks_of_documents(doc_ids)
    }

    /// Vectors by text hash, in hash order, `limit` from the one after `after`.
    pub fn vectors_page(&self, after: &str, limit: usize) -> Result<Vec<(String, Vec<f32>)>> {
        self.backend.vectors_page(after, limit)
    }

    /// The vector stored for a chunk text.
    pub fn vector(&self, text_hash: &str) -> Result<Option<Vec<f32>>> {
        self.backend.vector(text_hash)
    }

    /// Vectors stored (one per distinct chunk text, orphans included).
    pub fn count_vectors(&self) -> Result<u64> {
        self.backend.count_vectors()
    }

    /// Store a batch of vectors in one transaction (PostgreSQL: one statement).
    pub fn import_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        self.backend.import_vectors(vectors)
    }

    /// Empty the knowledge base in one transaction, keeping the schema.
    pub fn clear_for_import(&mut self) -> Result<()> {
        self.backend.clear_for_import()
    }
}
