//! Keeps the docs honest: every file the Markdown documents point a reader at (by a relative
//! link, a backticked repository path or a document named in the text) must exist in the
//! repository, and LICENSE, CHANGELOG.md and SECURITY.md must be there.
//!
//! Checked: every `*.md` under the repository root (`README.md`, `SECURITY.md`,
//! `CHANGELOG.md`, `deploy/README.md`, `docs/**`, …), outside `target/` and hidden
//! directories. Fenced code blocks are not read: they hold commands run from other
//! directories and example output. What counts as a reference:
//!
//! - Markdown links and reference definitions, `[x](path)` and `[x]: path`, resolved against
//!   the file's own directory (a leading `/` against the repository root, as GitHub does).
//!   External URLs and pure `#anchors` are skipped and anchors are cut off; links into this
//!   repository's own GitHub tree (`https://github.com/authwatch/authwatch/blob/main/…`) are
//!   checked like root-relative ones.
//! - Words of inline code spans that start with a top-level directory (`src/`, `tests/`,
//!   `deploy/`, …): paths from the root. Words with placeholders (`<key>`, `*`, `…`, `$VAR`)
//!   are skipped and `{a,b}` is expanded; in a `kubectl` command `deploy/NAME` is a
//!   Deployment, not a file.
//! - Any other `name.md`, in a code span or in running text: a document, beside the file or
//!   from the root.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Top-level directories whose names mark a backticked word as a repository path.
const TOP_DIRS: &[&str] = &[
    "src", "tests", "deploy", "docs", "scripts", "grafana", "benches", "fuzz", ".ci",
];

/// Files every release must carry at the root.
const REQUIRED: &[&str] = &["README.md", "LICENSE", "CHANGELOG.md", "SECURITY.md"];

/// This repository on GitHub: links under it are links into the tree.
const OWN_TREES: &[&str] = &[
    "https://github.com/authwatch/authwatch/blob/main/",
    "https://github.com/authwatch/authwatch/tree/main/",
];

/// Characters that make a word an example or a pattern rather than a path.
const PLACEHOLDERS: &[char] = &['<', '>', '*', '$', '…', '?', '=', '#', '|', '%'];

/// One reference found in a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ref {
    line: usize,
    kind: RefKind,
    /// As written (after anchor and punctuation are cut off).
    text: String,
    /// Where it may be, relative to the repository root: one of them must exist.
    candidates: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Link,
    Code,
    /// A bare `name.md` in running text.
    Prose,
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefKind::Link => "link",
            RefKind::Code => "backticked path",
            RefKind::Prose => "document named in the text",
        })
    }
}

/// How a word found in the text is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// From the repository root (`src/…`, `deploy/…`).
    Root,
    /// Beside the Markdown file, else from the root (a bare `README.md`).
    BesideOrRoot,
}

/// The text with fenced code blocks blanked out (newlines kept, so line numbers hold).
fn without_fences(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut fence: Option<(char, usize)> = None;
    for line in md.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        let marker = ['`', '~']
            .into_iter()
            .map(|c| (c, run(c)))
            .find(|&(_, n)| n >= 3)
            .filter(|_| indent <= 3);
        match (fence, marker) {
            (None, Some(opening)) => fence = Some(opening),
            (Some((c, n)), Some((c2, n2)))
                if c == c2 && n2 >= n && trimmed[n2..].trim().is_empty() =>
            {
                fence = None
            }
            (None, None) => {
                out.push_str(line);
                continue;
            }
            _ => {}
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Splits text into code spans (with the line each starts on) and the prose around them,
/// in which every span is replaced by spaces (newlines kept).
fn code_spans(text: &str) -> (Vec<(usize, String)>, String) {
    let bytes = text.as_bytes();
    let ticks = |at: usize| bytes[at..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut prose = String::with_capacity(text.len());
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let c = text[i..].chars().next().unwrap_or(' ');
            line += usize::from(c == '\n');
            prose.push(c);
            i += c.len_utf8();
            continue;
        }
        let run = ticks(i);
        let start = i + run;
        // The closing run has exactly as many backticks.
        let mut j = start;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] != b'`' {
                j += 1;
                continue;
            }
            let n = ticks(j);
            if n == run {
                close = Some(j);
                break;
            }
            j += n;
        }
        let Some(end) = close else {
            // An unmatched run is literal text.
            prose.push_str(&text[i..start]);
            i = start;
            continue;
        };
        spans.push((line, text[start..end].to_string()));
        for c in text[i..end + run].chars() {
            if c == '\n' {
                line += 1;
                prose.push('\n');
            } else {
                prose.push(' ');
            }
        }
        i = end + run;
    }
    (spans, prose)
}

/// Normalises `a/./b/../c` without touching the file system; `None` when it climbs out of
/// the repository.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    Some(out)
}

/// `%20` and friends, as a browser decodes them in a link.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The repository path a link destination names, if it names one: (as written, path).
fn link_target(dest: &str, md_dir: &Path) -> Option<(String, PathBuf)> {
    let dest = dest.trim();
    let dest = dest
        .strip_prefix('<')
        .and_then(|d| d.strip_suffix('>'))
        .unwrap_or(dest);
    let (dest, from_root) = match OWN_TREES.iter().find_map(|t| dest.strip_prefix(t)) {
        Some(rest) => (rest, true),
        None => (dest, dest.starts_with('/')),
    };
    let lower = dest.to_ascii_lowercase();
    let external = lower.contains("://")
        || ["mailto:", "tel:", "data:"]
            .iter()
            .any(|s| lower.starts_with(s));
    let bare = dest.split(['#', '?']).next().unwrap_or_default();
    if external || bare.is_empty() {
        return None;
    }
    let bare = percent_decode(bare);
    let joined = if from_root {
        PathBuf::from(bare.trim_start_matches('/'))
    } else {
        md_dir.join(&bare)
    };
    let path = normalise(&joined).unwrap_or_else(|| PathBuf::from(&bare));
    Some((bare, path))
}

/// The destination of a reference definition (`[label]: dest`), if the line is one.
fn reference_definition(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 || !t.starts_with('[') {
        return None;
    }
    let close = t.find("]:")?;
    if t[..close].contains("](") {
        return None;
    }
    t[close + 2..].split_whitespace().next()
}

/// The destination of the inline link or image whose `](` starts `after`.
fn inline_destination(after: &str) -> Option<&str> {
    if let Some(inner) = after.strip_prefix('<') {
        return inner.split_once('>').map(|(d, _)| d);
    }
    // Up to the closing parenthesis (nested ones balanced) or a title after a space.
    let mut depth = 0usize;
    for (k, c) in after.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(&after[..k]),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(&after[..k]),
            _ => {}
        }
    }
    None
}

/// Link destinations in prose: inline `[x](dest)`, images, and reference definitions.
fn links(prose: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose.lines().enumerate() {
        if let Some(dest) = reference_definition(line) {
            found.push((n + 1, dest.to_string()));
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(dest) = inline_destination(rest) {
                found.push((n + 1, dest.to_string()));
            }
        }
    }
    found
}

/// Expands `{a,b,c}` as a shell would.
fn expand_braces(word: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (word.find('{'), word.find('}')) else {
        return vec![word.to_string()];
    };
    if close < open {
        return vec![word.to_string()];
    }
    let (head, alts, tail) = (&word[..open], &word[open + 1..close], &word[close + 1..]);
    alts.split(',')
        .flat_map(|a| expand_braces(&format!("{head}{a}{tail}")))
        .collect()
}

/// `file:line` and `file:line:column` without the numbers.
fn strip_line_suffix(word: &str) -> &str {
    let mut w = word;
    for _ in 0..2 {
        match w.rsplit_once(':') {
            Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => w = head,
            _ => break,
        }
    }
    w
}

/// A Markdown document's name, not a URL path or an example.
fn is_document(word: &str) -> bool {
    word.len() > 3 && word.ends_with(".md") && !word.starts_with('/')
}

/// `deploy/NAME` with a bare Kubernetes name: lowercase letters, digits and dashes.
fn is_kube_resource(word: &str) -> bool {
    word.strip_prefix("deploy/").is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// Words of a code span that name repository files.
fn code_paths(span: &str) -> Vec<(String, Base)> {
    let mut out = Vec::new();
    // In a kubectl command `deploy/NAME` is a Deployment (kubectl's short name), not a file.
    let kubectl = span.split_whitespace().any(|w| w == "kubectl");
    for word in span.split_whitespace() {
        if word.contains(PLACEHOLDERS) || word.contains("...") || word.contains("://") {
            continue;
        }
        // Quotes, brackets and punctuation around a path in a command or a list.
        let word = word.trim_matches(|c: char| "'\"()[],;".contains(c));
        let word = word.strip_prefix("./").unwrap_or(word);
        let word = strip_line_suffix(word).trim_end_matches(['.', ':']);
        let top = word.split('/').next().unwrap_or_default();
        if word.contains('/') && TOP_DIRS.contains(&top) {
            if !(kubectl && is_kube_resource(word)) {
                out.extend(expand_braces(word).into_iter().map(|w| (w, Base::Root)));
            }
        } else if is_document(word) {
            out.push((word.to_string(), Base::BesideOrRoot));
        }
    }
    out
}

/// Bare `name.md` words in prose (links and URLs excepted: the link check has them).
fn prose_documents(prose: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose.lines().enumerate() {
        if reference_definition(line).is_some() {
            continue;
        }
        for word in line.split_whitespace() {
            if word.contains("](") || word.contains("://") || word.starts_with('[') {
                continue;
            }
            // Punctuation and emphasis around the name: "(see DESIGN.md §10):", **x.md**.
            let word = word.trim_start_matches(['(', '\'', '"', '*', '_']);
            let word =
                word.trim_end_matches(['.', ',', ';', ':', ')', '\'', '"', '*', '_', '!', '?']);
            let word = word.strip_suffix("'s").unwrap_or(word);
            if is_document(word) && !word.contains(PLACEHOLDERS) {
                found.push((n + 1, word.to_string()));
            }
        }
    }
    found
}

fn candidates(md_dir: &Path, word: &str, base: Base) -> Vec<PathBuf> {
    let from_root = normalise(Path::new(word)).unwrap_or_else(|| PathBuf::from(word));
    let mut out = Vec::new();
    if base == Base::BesideOrRoot
        && let Some(beside) = normalise(&md_dir.join(word))
    {
        out.push(beside);
    }
    if !out.contains(&from_root) {
        out.push(from_root);
    }
    out
}

/// Every reference in one Markdown file, `rel` being its path from the repository root.
fn references(md: &str, rel: &Path) -> Vec<Ref> {
    let md_dir = rel.parent().unwrap_or(Path::new(""));
    let (spans, prose) = code_spans(&without_fences(md));
    let mut refs = Vec::new();
    for (line, dest) in links(&prose) {
        if let Some((text, path)) = link_target(&dest, md_dir) {
            refs.push(Ref {
                line,
                kind: RefKind::Link,
                text,
                candidates: vec![path],
            });
        }
    }
    for (line, name) in prose_documents(&prose) {
        refs.push(Ref {
            line,
            kind: RefKind::Prose,
            candidates: candidates(md_dir, &name, Base::BesideOrRoot),
            text: name,
        });
    }
    for (line, span) in spans {
        for (word, base) in code_paths(&span) {
            refs.push(Ref {
                line,
                kind: RefKind::Code,
                candidates: candidates(md_dir, &word, base),
                text: word,
            });
        }
    }
    refs
}

/// The Markdown files of the repository, as paths from the root, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = dir.join(&name);
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                // VCS data, build output and fuzzing corpora are not documentation.
                let skip = name.starts_with('.')
                    || ["target", "corpus", "artifacts", "node_modules"].contains(&name.as_str());
                if !skip {
                    walk(root, &rel, out);
                }
            } else if name.ends_with(".md") {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort();
    out
}

#[test]
fn every_markdown_reference_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| !root.join(f).is_file())
        .map(|f| format!("{f}: missing from the repository root"))
        .collect();
    let mut checked = 0;
    for rel in &files {
        let md = std::fs::read_to_string(root.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        for r in references(&md, rel) {
            checked += 1;
            if r.candidates.iter().any(|p| root.join(p).exists()) {
                continue;
            }
            let looked: Vec<String> = r
                .candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            missing.push(format!(
                "{}:{}: {} `{}` -> {} does not exist",
                rel.display(),
                r.line,
                r.kind,
                r.text,
                looked.join(" or ")
            ));
        }
    }
    assert!(
        checked > 50,
        "only {checked} references found: is the parser broken?"
    );
    assert!(
        missing.is_empty(),
        "{} missing (of {checked} references in {} Markdown files); fix the text, or add \
         the file it points at:\n  {}",
        missing.len(),
        files.len(),
        missing.join("\n  ")
    );
}

#[test]
fn the_extractor_finds_what_it_should_and_nothing_else() {
    let md = "\
# Title with `src/lib.rs`

See [the guide](guide.md#setup), [up](../README.md), ![img](<img/a b.png> \"t\"),
[ext](https://example.com/x.md), [anchor](#only), [own](https://github.com/authwatch/authwatch/blob/main/src/main.rs#L3)
and `scripts/test.sh --flag`, `./tests/foo.rs:12:3`, `src/config/{a,b}.rs`, `kubectl logs deploy/coredns`,
`src/probe/<key>.rs`, `/run/secrets/x`, `target/debug`, `net/resolve.rs`, `docs/x.md`, `deploy/...`.
A span across lines: `kubernetes-validate
deploy/kubernetes/`, and `` code with ` and fuzz/README.md ``, (see NOTES.md §2), `shared/y.md`.

```sh
cat src/in_a_fence.rs
```

[ref]: ./other/file.md
";
    let refs = references(md, Path::new("docs/page.md"));
    let got: Vec<(usize, RefKind, String)> = refs
        .iter()
        .map(|r| {
            let c: Vec<String> = r
                .candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (r.line, r.kind, c.join(" or "))
        })
        .collect();
    let want: Vec<(usize, RefKind, String)> = [
        (3, RefKind::Link, "docs/guide.md"),
        (3, RefKind::Link, "README.md"),
        (3, RefKind::Link, "docs/img/a b.png"),
        (4, RefKind::Link, "src/main.rs"),
        (14, RefKind::Link, "docs/other/file.md"),
        (8, RefKind::Prose, "docs/NOTES.md or NOTES.md"),
        (1, RefKind::Code, "src/lib.rs"),
        (5, RefKind::Code, "scripts/test.sh"),
        (5, RefKind::Code, "tests/foo.rs"),
        (5, RefKind::Code, "src/config/a.rs"),
        (5, RefKind::Code, "src/config/b.rs"),
        (6, RefKind::Code, "docs/x.md"),
        (7, RefKind::Code, "deploy/kubernetes"),
        (8, RefKind::Code, "fuzz/README.md"),
        (8, RefKind::Code, "docs/shared/y.md or shared/y.md"),
    ]
    .into_iter()
    .map(|(l, k, p)| (l, k, p.to_string()))
    .collect();
    assert_eq!(got, want);
}
