//! The runbooks in docs/runbooks/ stay in step with the cause table (src/diagnosis/cause.rs)
//! and with the alerts that link to them (deploy/prometheus/alerts.yml).
//!
//! Each cause has docs/runbooks/<cause>.md. Its first block, between
//! `<!-- generated from src/diagnosis/cause.rs: do not edit -->` and `<!-- end generated -->`,
//! holds the cause's title, severity, summary and remediation as `Cause` gives them (the texts
//! the daemon logs and the alerts carry); the rest of the page is written by hand and kept as
//! it is. The index, docs/runbooks/README.md, has a generated table of the causes in the same
//! way. Run with `AUTHWATCH_UPDATE_RUNBOOKS=1` to rewrite the generated blocks (and to start a
//! page for a new cause, with placeholders the check then rejects until they are filled in):
//!
//! ```sh
//! AUTHWATCH_UPDATE_RUNBOOKS=1 cargo test --test runbooks
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use authwatch::diagnosis::Cause;

#[path = "common/rules.rs"]
mod rules;
use rules::alert_name;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BEGIN: &str = "<!-- generated from src/diagnosis/cause.rs: do not edit -->";
const END: &str = "<!-- end generated -->";
/// Where the alerts' runbook_url point (operators rewrite this prefix for an internal copy).
const BASE: &str = "https://github.com/authwatch/authwatch/blob/main/docs/runbooks/";
/// What every cause's page explains, in this order, after the generated block.
const CAUSE_SECTIONS: [&str; 5] = [
    "## What it means",
    "## Confirm by hand",
    "## What authwatch shows",
    "## Fix",
    "## When it clears",
];
/// What the page of an alert that is not a cause explains.
const ALERT_SECTIONS: [&str; 4] = [
    "## What it means",
    "## Confirm by hand",
    "## Fix",
    "## When it clears",
];
const PLACEHOLDER: &str = "TODO";

fn dir() -> PathBuf {
    Path::new(ROOT).join("docs/runbooks")
}

fn updating() -> bool {
    std::env::var_os("AUTHWATCH_UPDATE_RUNBOOKS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming {}: {e}", tmp.display()));
    eprintln!("wrote {}", path.display());
}

/// The text as Markdown that renders to it: outside code spans `<` would open an HTML tag
/// (`clerk.<your-domain>` would vanish), so it is escaped as `\<`; nothing else changes.
fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut code = false;
    for c in text.chars() {
        match c {
            '`' => code = !code,
            '<' if !code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// What `markdown` did, undone: the exact text again.
fn unescape(md: &str) -> String {
    md.replace("\\<", "<")
}

/// The generated block of a cause's page, markers included.
fn cause_block(cause: Cause) -> String {
    let label = cause.as_label();
    let alert = alert_name(cause);
    format!(
        "{BEGIN}\n\
         # {title}\n\
         \n\
         | cause | severity | alert |\n\
         |---|---|---|\n\
         | `{label}` | {severity} | `{alert}` |\n\
         \n\
         **Summary:** {summary}\n\
         \n\
         **Remediation:** {remediation}\n\
         \n\
         `{alert}` fires for each vantage (one authwatch) that sees the cause, with \
         `scope=\"local\"`. When it fires at every vantage that reports (at least two), \
         `AuthCauseSeenEverywhere{{cause=\"{label}\"}}` (`scope=\"global\"`) pages instead: see \
         [a cause seen everywhere](AuthCauseSeenEverywhere.md). All runbooks: \
         [index](README.md).\n\
         {END}",
        title = cause.title(),
        severity = cause.severity(),
        summary = markdown(cause.summary()),
        remediation = markdown(cause.remediation()),
    )
}

/// The generated cause table of the index, markers included.
fn index_block() -> String {
    let mut out = format!("{BEGIN}\n| runbook | cause | severity | alert |\n|---|---|---|---|\n");
    for cause in Cause::ALL {
        out.push_str(&format!(
            "| [{title}]({label}.md) | `{label}` | {severity} | `{alert}` |\n",
            title = cause.title(),
            label = cause.as_label(),
            severity = cause.severity(),
            alert = alert_name(cause),
        ));
    }
    out.push_str(END);
    out
}

/// The page's text with its generated block replaced by `block` (`None`: no block found).
fn with_block(text: &str, block: &str) -> Option<String> {
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some(format!("{}{block}{}", &text[..start], &text[end..]))
}

/// The generated block of a page, markers included.
fn block_of(text: &str) -> Option<&str> {
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some(&text[start..end])
}

/// A page for a new cause: the generated block and the sections to write, as placeholders.
fn new_page(cause: Cause) -> String {
    let mut page = cause_block(cause);
    for section in CAUSE_SECTIONS {
        page.push_str(&format!("\n\n{section}\n\n{PLACEHOLDER}"));
    }
    page.push('\n');
    page
}

/// Rewrites the generated blocks when updating; returns what is wrong with the pages.
fn check_or_update(path: &Path, block: &str, new: impl FnOnce() -> String) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    if !path.exists() {
        if updating() {
            write(path, &new());
        } else {
            return vec![format!(
                "docs/runbooks/{name} is missing (AUTHWATCH_UPDATE_RUNBOOKS=1 cargo test --test \
                 runbooks starts it)"
            )];
        }
    }
    let text = read(path);
    match (block_of(&text), updating()) {
        (Some(b), _) if b == block => Vec::new(),
        (Some(_), true) => {
            write(path, &with_block(&text, block).unwrap());
            Vec::new()
        }
        (Some(b), false) => vec![format!(
            "docs/runbooks/{name}: the generated block differs from the cause table; run \
             AUTHWATCH_UPDATE_RUNBOOKS=1 cargo test --test runbooks\n--- in the file\n{b}\n--- \
             generated\n{block}"
        )],
        (None, true) => {
            write(path, &format!("{block}\n\n{text}"));
            Vec::new()
        }
        (None, false) => vec![format!(
            "docs/runbooks/{name}: no generated block ({BEGIN} … {END})"
        )],
    }
}

/// The hand-written part: every section there, in order, filled in.
fn sections(name: &str, text: &str, wanted: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut at = 0;
    for section in wanted {
        match text[at..].find(&format!("\n{section}\n")) {
            Some(i) => at += i + section.len(),
            None => problems.push(format!(
                "docs/runbooks/{name}: section `{section}` missing or out of order (wanted: \
                 {wanted:?})"
            )),
        }
    }
    if text.contains(PLACEHOLDER) {
        problems.push(format!(
            "docs/runbooks/{name}: still has {PLACEHOLDER} placeholders to fill in"
        ));
    }
    problems
}

#[test]
fn every_cause_has_a_runbook_in_step_with_the_cause_table() {
    std::fs::create_dir_all(dir()).unwrap();
    let mut problems = Vec::new();
    for cause in Cause::ALL {
        let label = cause.as_label();
        let path = dir().join(format!("{label}.md"));
        problems.extend(check_or_update(&path, &cause_block(cause), || {
            new_page(cause)
        }));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = format!("{label}.md");
        // The texts are there verbatim (as Markdown that renders to them).
        for (what, exact) in [
            ("summary", cause.summary()),
            ("remediation", cause.remediation()),
        ] {
            if !text.contains(&markdown(exact)) {
                problems.push(format!("docs/runbooks/{name}: no {what} {exact:?}"));
            }
        }
        let block = unescape(block_of(&text).unwrap_or_default());
        for exact in [cause.summary(), cause.remediation(), cause.title()] {
            if !block.contains(exact) {
                problems.push(format!(
                    "docs/runbooks/{name}: the generated block lacks {exact:?}"
                ));
            }
        }
        if !block.contains(&format!("| `{label}` | {} |", cause.severity())) {
            problems.push(format!(
                "docs/runbooks/{name}: severity {} not stated",
                cause.severity()
            ));
        }
        let after = text.split(END).nth(1).unwrap_or_default();
        problems.extend(sections(&name, after, &CAUSE_SECTIONS));
    }
    let index = dir().join("README.md");
    problems.extend(check_or_update(&index, &index_block(), || {
        format!("# Runbooks\n\n{}\n", index_block())
    }));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The pages in docs/runbooks/, by file name.
fn pages() -> BTreeSet<String> {
    std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("reading docs/runbooks: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect()
}

#[test]
fn every_alert_links_to_a_runbook_that_exists() {
    let pages = pages();
    let mut problems = Vec::new();
    for (name, rule) in rules::load().into_alerts() {
        let Some(url) = rule.annotations.get("runbook_url") else {
            problems.push(format!("{name}: no runbook_url annotation"));
            continue;
        };
        let Some(page) = url.strip_prefix(BASE) else {
            problems.push(format!(
                "{name}: runbook_url {url} does not start with {BASE}"
            ));
            continue;
        };
        // A per-cause alert links to its cause's page; another alert to its own page; an alert
        // about any cause (AuthCauseSeenEverywhere) to the page of the cause it names.
        let expanded: Vec<String> = if page.contains("{{ $labels.cause }}") {
            Cause::ALL
                .iter()
                .map(|c| page.replace("{{ $labels.cause }}", c.as_label()))
                .collect()
        } else {
            let want = match rule.labels.get("cause") {
                Some(cause) => format!("{cause}.md"),
                None => format!("{name}.md"),
            };
            if page != want {
                problems.push(format!("{name}: runbook_url names {page}, expected {want}"));
            }
            vec![page.to_string()]
        };
        for p in expanded {
            if !pages.contains(&p) {
                problems.push(format!(
                    "{name}: runbook_url {BASE}{p}: docs/runbooks/{p} does not exist"
                ));
            }
        }
        if !rule.labels.contains_key("cause") && !page.contains("{{") {
            let path = dir().join(page);
            if let Ok(text) = std::fs::read_to_string(&path) {
                problems.extend(sections(page, &text, &ALERT_SECTIONS));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_runbook_for_a_cause_or_alert_that_does_not_exist() {
    let causes: BTreeSet<String> = Cause::ALL
        .iter()
        .map(|c| format!("{}.md", c.as_label()))
        .collect();
    let alerts: BTreeSet<String> = rules::load()
        .into_alerts()
        .into_iter()
        .filter(|(_, r)| !r.labels.contains_key("cause"))
        .map(|(n, _)| format!("{n}.md"))
        .collect();
    let stray: Vec<String> = pages()
        .into_iter()
        .filter(|p| p != "README.md" && !causes.contains(p) && !alerts.contains(p))
        .collect();
    assert!(
        stray.is_empty(),
        "docs/runbooks/ has pages for no cause in Cause::ALL and no alert of alerts.yml: \
         {stray:?}"
    );
}

#[test]
fn the_index_links_every_runbook() {
    let index = read(&dir().join("README.md"));
    let missing: Vec<String> = pages()
        .into_iter()
        .filter(|p| p != "README.md" && !index.contains(&format!("]({p})")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/runbooks/README.md does not link {missing:?}"
    );
}

#[test]
fn markdown_escaping_round_trips() {
    for cause in Cause::ALL {
        for text in [cause.summary(), cause.remediation()] {
            assert_eq!(unescape(&markdown(text)), text);
        }
    }
    assert_eq!(
        markdown("a clerk.<your-domain> `x <y>`"),
        "a clerk.\\<your-domain> `x <y>`"
    );
}
