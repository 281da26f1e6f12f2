//! Anonymization in one place: the strategies a rule may name (parsed and
//! displayed in [`strategy`]), which column types each fits and the SQL that
//! applies them — the idempotence predicate and the `UPDATE`, through the
//! dialect ([`sql`]) — and the keyed hashes Lethe computes itself where the
//! engine cannot ([`hash`]).
//!
//! It builds values and statements; running them is the engine's job.

pub mod hash;
pub mod sql;
pub mod strategy;
