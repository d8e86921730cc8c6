//! The operations toolkit behind `exai health`, `exai logs`, `exai stats` and `exai db …`: every
//! step of an operator's routine as one tested command.

pub mod copy;
pub mod db;
pub mod health;
pub mod logs;
pub mod monitor;
pub mod pg;
pub mod queries;
pub mod resources;
pub mod service;
pub mod slo;
pub mod stats;
pub mod upgrade;
