//! The SQL behind anonymization: which column types a strategy fits, the idempotence predicate and the `UPDATE`.
