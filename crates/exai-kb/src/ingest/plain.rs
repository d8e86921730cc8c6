//! Plain text and source code: one section per file; code keeps its lines.

use crate::model::{DocType, ParsedDoc, Section};

pub fn parse_text(text: &str, title: &str) -> ParsedDoc {
    ParsedDoc {
        title: title.to_string(),
        sections: vec![Section {
            headings: Vec::new(),
            text: text.trim().to_string(),
            doc_type: DocType::Text,
        }],
        metadata: Default::default(),
        flagged: Default::default(),
    }
}

pub fn parse_code(text: &str, rel: &str) -> ParsedDoc {
    let language = rel.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    let mut metadata = serde_json::Map::new();
    metadata.insert("language".into(), serde_json::Value::String(language));
    ParsedDoc {
        title: rel.to_string(),
        sections: vec![Section {
            headings: Vec::new(),
            text: text.trim_end().to_string(),
            doc_type: DocType::Code,
        }],
        metadata,
        flagged: Default::default(),
    }
}
