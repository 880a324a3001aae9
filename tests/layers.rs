//! The direction of the crate's layers, read from the source: the domain and the timing wheel
//! depend on nothing of the service; the actors do not reach into the cluster or the API (they
//! hear of ownership and notices by message); no handler depends on the OpenAPI assembly; and
//! no source file outgrows 700 lines outside its test module.
//!
//! A path counts wherever it is written — in a `use` line, a grouped `use crate::{…}` or inline
//! in code — and comments do not count.

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The longest a source file may be, its `#[cfg(test)]` module aside.
const MAX_LINES: usize = 700;

/// Every `.rs` file under `dir`, recursively, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The file's code with comments (line, doc and block) blanked out; string literals are kept.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            ('"', _) => {
                in_str = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The first-level modules a piece of code names under `crate::`, whether written
/// `crate::store::X` or `crate::{store::X, domain::Y}`; `entities` when it names that crate.
fn crate_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("crate::") {
        // `crate::` itself, not the tail of another identifier.
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let mut depth = 0usize;
            let mut start = 0usize;
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(ident(group[start..j].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(ident(group[start..j].trim_start()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    for (i, _) in code.match_indices("entities::") {
        if i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            found.push("entities".to_string());
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(SRC)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `(file, module)` for every file under `src/<dir>` that names a forbidden module.
fn violations(dir: &str, forbidden: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in sources(&Path::new(SRC).join(dir)) {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let code = code_of(&text);
        for m in crate_modules(&code) {
            if forbidden.contains(&m.as_str()) {
                out.push((relative(&file), m));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_domain_depends_on_nothing_of_the_service() {
    let v = violations("domain", &["actors", "api", "cluster", "store", "entities"]);
    assert!(v.is_empty(), "domain imports: {v:?}");
}

#[test]
fn the_timing_wheel_depends_on_nothing_of_the_service() {
    let v = violations("wheel", &["actors", "api", "cluster", "store", "entities"]);
    assert!(v.is_empty(), "wheel imports: {v:?}");
}

#[test]
fn the_actors_reach_neither_the_cluster_nor_the_api() {
    let v = violations("actors", &["cluster", "api"]);
    assert!(v.is_empty(), "actors import: {v:?}");
}

#[test]
fn no_handler_depends_on_the_openapi_assembly() {
    let mut offenders = Vec::new();
    for file in sources(&Path::new(SRC).join("api")) {
        let name = relative(&file);
        if name.ends_with("docs.rs") || name.ends_with("api/mod.rs") {
            // The assembly itself, and the module that mounts it.
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("a readable source file"));
        if code.contains("docs::") {
            offenders.push(name);
        }
    }
    assert!(
        offenders.is_empty(),
        "handlers importing docs.rs: {offenders:?}"
    );
}

#[test]
fn no_source_file_is_over_700_lines_outside_its_test_module() {
    let mut long = Vec::new();
    for file in sources(Path::new(SRC)) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            // A test module in a file of its own.
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let lines: Vec<&str> = text.lines().collect();
        let end = lines
            .iter()
            .position(|l| l.trim() == "#[cfg(test)]")
            .unwrap_or(lines.len());
        if end > MAX_LINES {
            long.push((relative(&file), end));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_dead_code_or_argument_list_allowance_outside_tests() {
    let mut found = Vec::new();
    for file in sources(Path::new(SRC)) {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let end = text.find("#[cfg(test)]").unwrap_or(text.len());
        for needle in ["dead_code", "too_many_arguments"] {
            if code_of(&text[..end]).contains(needle) {
                found.push((relative(&file), needle));
            }
        }
    }
    assert!(found.is_empty(), "allowances: {found:?}");
}

#[test]
fn the_path_reader_sees_grouped_inline_and_entity_paths_but_not_comments() {
    let code = code_of(
        "use crate::{store::Write, domain::{A, B}};\n\
         // crate::api::x\n\
         let p = crate::cluster::partition_of(id, 8);\n\
         /* entities::tasks */ let m = entities::task_logs::Model;\n\
         let s = \"// not a comment\"; use crate::wheel;",
    );
    let mut m = crate_modules(&code);
    m.sort();
    assert_eq!(
        m,
        ["cluster", "domain", "entities", "store", "wheel"],
        "{code}"
    );
}
