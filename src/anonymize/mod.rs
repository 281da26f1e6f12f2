//! Anonymization without SQL: the strategies a rule may name (parsed and
//! displayed in [`strategy`]) and the keyed hashes Lethe computes itself
//! where the engine cannot ([`hash`]).
//!
//! The SQL that applies a strategy — which column types it fits, the
//! idempotence predicate and the `UPDATE` — is `crate::sql::anonymize`, next
//! to the dialects whose expressions it composes: dynamic SQL is built in one
//! module, and this one stays a leaf that `config` and `sql` can both use.

pub mod hash;
pub mod strategy;
