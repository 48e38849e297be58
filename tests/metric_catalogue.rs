//! The README's metric tables and the code's catalogue of families agree: every family the code
//! declares has a row, every row names a declared family, and no name is declared twice.

use std::collections::BTreeSet;

use authwatch::encode::MetricType;

/// Backticked metric names in the first column of the README's tables under `## Metrics`.
fn documented() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let start = readme.find("\n## Metrics").expect("a Metrics section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 1 + i);
    let mut names = BTreeSet::new();
    for line in readme[start..end].lines() {
        let Some(first) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
            continue;
        };
        for part in first.split('`').skip(1).step_by(2) {
            if part.starts_with("authwatch_")
                || part.starts_with("probe_")
                || part.starts_with("process_")
            {
                names.insert(part.to_string());
            }
        }
    }
    names
}

#[test]
fn every_declared_family_is_documented_and_every_row_declared() {
    let catalogue = authwatch::metrics::catalogue();
    let mut declared = BTreeSet::new();
    for f in &catalogue {
        // Counters are exposed (and documented) with `_total`.
        let exposed = match f.ty {
            MetricType::Counter => format!("{}_total", f.name),
            _ => f.name.to_string(),
        };
        assert!(
            declared.insert(exposed.clone()),
            "{exposed} is declared twice (a family must be declared once and shared)"
        );
    }
    let documented = documented();
    let missing: Vec<&String> = declared.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "families without a README row: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "README rows for no declared family: {stale:?}"
    );
    assert!(
        declared.len() > 60,
        "the catalogue looks incomplete: {declared:?}"
    );
}
