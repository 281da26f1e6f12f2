//! Guards: the limits that stop a rule before it touches anything, judged
//! the same way for a plan and a run (SQL and object rules alike).

/// Why a guard stops a rule that matches `matched` of `total` items, if it does.
pub(crate) fn guard_reason(
    max_rows: Option<u64>,
    max_fraction: Option<f64>,
    matched: u64,
    total: u64,
    what: &str,
) -> Option<String> {
    match (max_rows, max_fraction) {
        (Some(max), _) if matched > max => {
            Some(format!("{matched} {what} match, max_rows is {max}"))
        }
        (_, Some(f)) if total > 0 && (matched as f64 / total as f64) > f => Some(format!(
            "{matched} of {total} {what} match ({:.1}%), max_fraction is {:.1}%",
            100.0 * matched as f64 / total as f64,
            100.0 * f
        )),
        _ => None,
    }
}
