//! Typed outcomes of runs, jobs and rules, serialized as the strings the audit log, metrics and JSON output have always used.
