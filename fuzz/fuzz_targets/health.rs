//! Fuzzes the extraction of per-check results from an API health body (`extract_checks`).
#![no_main]

use std::collections::HashSet;

use authwatch::probe::api_health::extract_checks;
use libfuzzer_sys::fuzz_target;

// Input layout: [max_checks] [pointer length, 0 = no pointer] [pointer] [JSON body].
// The settings come from the input so the mutator explores the cap and the pointer too.
fuzz_target!(|data: &[u8]| {
    let [max, ptr_len, rest @ ..] = data else {
        return;
    };
    let max = usize::from(*max);
    let ptr_len = usize::from(*ptr_len).min(rest.len());
    let (ptr, body) = rest.split_at(ptr_len);
    // Config validation only lets through pointers that start with '/'.
    let pointer = (ptr_len > 0).then(|| {
        let p = String::from_utf8_lossy(ptr);
        if p.starts_with('/') { p.into_owned() } else { format!("/{p}") }
    });
    // As the probe does: a body that is not JSON never reaches extraction.
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let Ok((checks, truncated)) = extract_checks(&doc, pointer.as_deref(), max) else {
        return;
    };
    // Each check becomes a metric label: the series count must stay capped, names unique
    // (one series each) and label-safe.
    assert!(checks.len() <= max);
    assert!(!truncated || checks.len() == max);
    let names: HashSet<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), checks.len(), "duplicate check names: {checks:?}");
    for (name, _) in &checks {
        assert!(!name.is_empty() && name.chars().count() <= 64, "{name:?}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)),
            "{name:?}"
        );
    }
});
