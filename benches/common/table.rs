//! The Markdown tables both benchmarks print (`benches/list`, `benches/reload`): a table's
//! head, and the median every cell of theirs reports. Shared as a file
//! (`#[path = "../common/table.rs"] mod table;`), since benches are not a crate of their own.

/// The head of a Markdown table: the column names, then the line of `---` under them, each
/// ending with a newline. Counting the `|---|` by hand is how a table loses a column.
pub fn header(columns: &[&str]) -> String {
    format!(
        "| {} |\n|{}\n",
        columns.join(" | "),
        "---|".repeat(columns.len())
    )
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}
