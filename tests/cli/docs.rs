//! The documentation holds together: every relative link in the repository's Markdown reaches
//! a file, and every `#anchor` a heading of it; every `docs/design.md §N` the code cites is a
//! section of docs/design.md, and every `docs/NAME.md, "Heading"` a heading of that file; no
//! file points outside the repository to the workspace's notes (`../shared`), which a clone
//! does not have.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::repo;

/// Folders that hold no documentation or code of ours: builds, caches, the fixtures' weights.
const SKIPPED: [&str; 7] = ["target", ".git", "node_modules", "__pycache__", ".pytest_cache", ".venv", "fixtures"];

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                files_under(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// The repository's files with these extensions, but this one, which spells out the patterns
/// it looks for.
fn repository_files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&repo(), &mut all);
    all.retain(|p| *p != repo().join(file!()));
    // No extensions: every file.
    all.retain(|p| {
        extensions.is_empty() || p.extension().is_some_and(|e| extensions.contains(&e.to_string_lossy().as_ref()))
    });
    all
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

/// Markdown with fenced code blocks and inline code spans blanked out: links inside code are
/// examples, not links.
fn without_code(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            }
            out.push(if in_code || c == '`' { ' ' } else { c });
        }
        out.push('\n');
    }
    out
}

/// The destinations of the inline links and images `[text](dest)` of a Markdown text.
fn link_destinations(markdown: &str) -> Vec<String> {
    let text = without_code(markdown);
    let mut links = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let dest = after[..end].split_whitespace().next().unwrap_or("").trim_matches(['<', '>']);
        links.push(dest.to_string());
        rest = &after[end.min(after.len())..];
    }
    links
}

/// The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces
/// as hyphens, a repeated one numbered (`-1`, `-2`, …).
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for heading in headings(markdown) {
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// The text of each ATX heading (`## Text`) outside code blocks.
fn headings(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            out.push(line[hashes..].trim().to_string());
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let markdown_files = repository_files(&["md"]);
    assert!(markdown_files.len() >= 10, "found only {} Markdown files", markdown_files.len());
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &markdown_files {
        let text = std::fs::read_to_string(file).unwrap();
        for dest in link_destinations(&text) {
            if dest.is_empty() || dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = dest.split_once('#').unwrap_or((dest.as_str(), ""));
            let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            if !target.exists() {
                broken.push(format!("{}: {dest} (no such file)", relative(file)));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let anchors = heading_anchors(&std::fs::read_to_string(&target).unwrap());
                if !anchors.contains(anchor) {
                    broken.push(format!("{}: {dest} (no heading with that anchor)", relative(file)));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} relative links found: is the link scanner broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_short_and_links_each_guide() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.len() <= 20 * 1024, "README.md is {} bytes, over 20 KB: move detail into docs/", readme.len());
    let linked: BTreeSet<String> = link_destinations(&readme).into_iter().collect();
    let mut guides = Vec::new();
    files_under(&repo().join("docs"), &mut guides);
    for guide in guides.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        let name = format!("docs/{}", guide.file_name().unwrap().to_string_lossy());
        assert!(linked.iter().any(|l| l.starts_with(&name)), "README.md does not link {name}");
    }
}

#[test]
fn the_anchor_rule_is_githubs() {
    let anchors = heading_anchors("# A\n## 4.1 The PyTorch reference\n### Forward or reverse: the crossover\n## A\n");
    let expected = ["a", "41-the-pytorch-reference", "forward-or-reverse-the-crossover", "a-1"];
    assert_eq!(anchors, expected.iter().map(|s| s.to_string()).collect());
    assert_eq!(link_destinations("see [x](a.md#b) and `[y](z.md)` and ![p](i.png \"t\")"), ["a.md#b", "i.png"]);
}

/// `docs/NAME.md §N` and `docs/NAME.md, "Heading"`, wherever the code cites them.
#[test]
fn the_codes_citations_of_the_docs_resolve() {
    let sources = repository_files(&["rs", "py", "sh", "cu", "cuh", "wgsl", "toml"]);
    let design = std::fs::read_to_string(repo().join("docs/design.md")).unwrap();
    let sections: BTreeSet<String> = headings(&design)
        .iter()
        .filter_map(|h| h.split_once('.').map(|(n, _)| n.to_string()))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let mut wrong = Vec::new();
    let mut cited = 0;
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Every `design.md` named in the code is the one in docs/.
        for (at, _) in text.match_indices("design.md") {
            if !text[..at].ends_with("docs/") {
                wrong.push(format!("{}: cites design.md without docs/", relative(file)));
            }
        }
        for (at, _) in text.match_indices("docs/design.md §") {
            let number: String =
                text[at + "docs/design.md §".len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
            cited += 1;
            if !sections.contains(&number) {
                wrong.push(format!("{}: docs/design.md §{number} is not a section", relative(file)));
            }
        }
        for (at, _) in text.match_indices(".md, \"") {
            let start = text[..at].rfind("docs/").filter(|&s| !text[s..at].contains(char::is_whitespace));
            let Some(start) = start else { continue };
            let doc = &text[start..at + 3];
            let quoted = &text[at + 6..];
            let Some(end) = quoted.find('"') else { continue };
            let heading = quoted[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            let heading = heading.trim_start_matches("//! ").replace("//! ", "").replace("/// ", "");
            cited += 1;
            match std::fs::read_to_string(repo().join(doc)) {
                Ok(target) if headings(&target).contains(&heading) => {}
                Ok(_) => wrong.push(format!("{}: {doc} has no heading \"{heading}\"", relative(file))),
                Err(_) => wrong.push(format!("{}: {doc} does not exist", relative(file))),
            }
        }
    }
    assert!(cited >= 20, "only {cited} citations of docs/ found: is the scanner broken?");
    assert!(wrong.is_empty(), "citations that do not resolve:\n{}", wrong.join("\n"));
}

#[test]
fn no_file_points_to_the_workspace_notes() {
    let outside = format!("..{}shared", '/');
    let files = repository_files(&[]);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| text.contains(&outside)))
        .map(|f| relative(f))
        .collect();
    assert!(offenders.is_empty(), "files that point to {outside}, which a clone does not have: {offenders:?}");
}
