//! The tidy test (STYLE.md rule 9): every file under `src/` opens with a `//!` header, each
//! module reaches only the modules its row of the STYLE.md module table allows (rules 1 and 2:
//! dependencies point down the table, nothing uses `cli`, `agent` and `diagnose` use no server
//! module), and only `clock` reads the system time (rule 7).
//!
//! It reads the source as text: comments, string and char literals are blanked first, then every
//! `crate::…` path (including `use crate::{a, b}` groups) and every `super::…` path that climbs
//! to the crate root is checked. Every failure names `file:line`. It must not depend on anything
//! but `std`, so that it also runs on a tree that does not build.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// STYLE.md's module table: each module and the modules its row says it may use. `pki` also gets
/// `wellknown`: the table names only `clock`, but rule 7 sends every magic string to `wellknown`,
/// and `wellknown` holds no logic, so using it cannot create a cycle.
const TABLE: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("wellknown", &[]),
    // Files the server re-reads while it runs: change detection and the load-or-keep rule,
    // for `server` (key, certificate and token files) and `controllers` (key rotation requests).
    ("reload", &[]),
    ("telemetry", &["clock", "wellknown"]),
    ("pki", &["clock", "wellknown"]),
    ("store", &["clock"]),
    ("registry", &["store", "clock", "wellknown"]),
    ("tokens", &["registry", "clock", "wellknown", "telemetry"]),
    ("admission", &["registry", "clock", "wellknown"]),
    // Authorization: the RBAC authorizer over a watch-fed copy of the policy, the escalation
    // checks and the bootstrap policy. Reads users (`tokens::UserInfo`), never tokens.
    ("rbac", &["registry", "clock", "wellknown", "tokens"]),
    (
        "controllers",
        &[
            "registry",
            "tokens",
            "pki",
            "clock",
            "wellknown",
            "telemetry",
            "reload",
        ],
    ),
    (
        "api",
        &[
            "clock",
            "wellknown",
            "telemetry",
            "pki",
            "store",
            "registry",
            "tokens",
            "admission",
            "controllers",
            "rbac",
        ],
    ),
    // `tokenwarden serve` once its flags are resolved: builds every server part from a
    // `server::Config` and runs it (ripgrep's `HiArgs` → run). Only `cli` uses it.
    (
        "server",
        &[
            "clock",
            "wellknown",
            "telemetry",
            "pki",
            "store",
            "registry",
            "tokens",
            "admission",
            "controllers",
            "rbac",
            "api",
            "reload",
        ],
    ),
    ("agent", &["clock", "wellknown", "telemetry"]),
    ("diagnose", &["clock", "wellknown", "telemetry"]),
    (
        "cli",
        &[
            "clock",
            "wellknown",
            "telemetry",
            "pki",
            "store",
            "registry",
            "tokens",
            "admission",
            "controllers",
            "rbac",
            "api",
            "server",
            "agent",
            "diagnose",
            "reload",
        ],
    ),
];

/// Rooms inside a row: (module, the module it uses, the only items of it that it may name).
/// STYLE.md: `api` serves tokens through the authenticator, the issuer and the OIDC documents
/// and never touches key material or JWS; controllers sign through `tokens::issuer`'s
/// `Signer`, never `tokens::jws`, and rotate the generated keys through `tokens::rotation`
/// (sealed records) and `tokens::keyring` (the set in use). Test modules (`#[cfg(test)]` onwards) may reach further, to
/// verify what was signed.
const INSIDE_RULES: &[(&str, &str, &[&str])] = &[
    (
        "api",
        "tokens",
        &["AuthenticatorChain", "UserInfo", "issuer", "oidc"],
    ),
    (
        "controllers",
        "tokens",
        &[
            "issuer",
            "keys",
            "authenticator",
            "claims",
            "KeySet",
            "keyring",
            "rotation",
        ],
    ),
    ("rbac", "tokens", &["UserInfo"]),
];

/// What `main.rs` may name in the library (`tokenwarden::…`).
const MAIN_MAY_USE: &[&str] = &["cli"];

/// The only module that may read the system time.
const TIME_SOURCE: &str = "clock";

/// Calls that read the wall clock (rule 7), as `Type::function`. `Instant::now` is absent on
/// purpose: measuring a duration is not reading the time.
const WALL_CLOCK_READS: &[(&str, &str)] = &[
    ("SystemTime", "now"),
    ("Timestamp", "now"),
    ("Zoned", "now"),
    ("Utc", "now"),
    ("Local", "now"),
    ("OffsetDateTime", "now_utc"),
    ("OffsetDateTime", "now_local"),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted, so that failures list in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("list {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A source file: its path relative to the package (`src/api/mod.rs`) and its text.
struct SourceFile {
    shown: String,
    /// The module path of the file: `src/api/watch.rs` is `["api", "watch"]`, `mod.rs` names its
    /// directory, `lib.rs` and `main.rs` are empty (see `kind`).
    module: Vec<String>,
    kind: FileKind,
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// `src/lib.rs`: the crate root, which only declares the modules.
    LibRoot,
    /// `src/main.rs`: the binary, which reaches the library as `tokenwarden::`.
    BinRoot,
    Module,
}

fn source_files() -> Vec<SourceFile> {
    let src = src_dir();
    rust_files(&src)
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&src)
                .unwrap_or_else(|_| panic!("{} is outside src/", path.display()));
            let mut module: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let file = module.pop().unwrap_or_default();
            let kind = match (module.is_empty(), file.as_str()) {
                (true, "lib.rs") => FileKind::LibRoot,
                (true, "main.rs") => FileKind::BinRoot,
                _ => FileKind::Module,
            };
            if kind == FileKind::Module && file != "mod.rs" {
                module.push(file.trim_end_matches(".rs").to_string());
            }
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            SourceFile {
                shown: format!("src/{}", rel.display()),
                module,
                kind,
                text,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A small lexer: enough of Rust's token rules to find paths outside comments and literals.
// ---------------------------------------------------------------------------------------------

/// `text` with every comment and every string, byte-string, raw-string and char literal replaced
/// by spaces; newlines are kept, so line numbers stay right.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && (i == 0 || !is_ident(chars[i - 1]) || raw_prefix(&chars, i))
            && raw_string_hashes(&chars, i + 1).is_some()
        {
            let hashes = raw_string_hashes(&chars, i + 1).unwrap_or_default();
            // r, the hashes and the opening quote.
            for _ in 0..hashes + 2 {
                out.push(' ');
            }
            i += hashes + 2;
            while i < chars.len() {
                let closes =
                    chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#'));
                if closes {
                    for _ in 0..hashes + 1 {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() {
                let ch = chars[i];
                if ch == '\\' {
                    blank(&mut out, ch);
                    if let Some(&escaped) = chars.get(i + 1) {
                        blank(&mut out, escaped);
                    }
                    i += 2;
                    continue;
                }
                blank(&mut out, ch);
                i += 1;
                if ch == '"' {
                    break;
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '"') or a lifetime ('a, 'static).
            if next == Some('\\') {
                out.push(' ');
                i += 1;
                while i < chars.len() {
                    let ch = chars[i];
                    blank(&mut out, ch);
                    i += 1;
                    if ch == '\\' {
                        if let Some(&escaped) = chars.get(i) {
                            blank(&mut out, escaped);
                        }
                        i += 1;
                    } else if ch == '\'' {
                        break;
                    }
                }
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` follows a `b` or `c` prefix that itself starts a token (`br"…"`).
fn raw_prefix(chars: &[char], i: usize) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    i >= 1 && matches!(chars[i - 1], 'b' | 'c') && (i == 1 || !is_ident(chars[i - 2]))
}

/// If `chars[from..]` is `#…#"`, the number of hashes.
fn raw_string_hashes(chars: &[char], from: usize) -> Option<usize> {
    let hashes = chars[from.min(chars.len())..]
        .iter()
        .take_while(|c| **c == '#')
        .count();
    (chars.get(from + hashes) == Some(&'"')).then_some(hashes)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The tokens of blanked text, each with its 1-based line.
fn tokens(blanked: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = blanked.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push((Tok::Ident(word), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

fn ident(tok: Option<&(Tok, usize)>) -> Option<&str> {
    match tok {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn is(tok: Option<&(Tok, usize)>, want: &Tok) -> bool {
    tok.is_some_and(|(t, _)| t == want)
}

/// The first segment of each path a path prefix leads to, with its line, starting at `toks[at]`
/// (just after `crate::`): `api` for `api::x`, `api` and `clock` for `{api::{self, X}, clock}`,
/// `*` for a glob.
fn path_heads(toks: &[(Tok, usize)], at: usize) -> Vec<(String, usize)> {
    match toks.get(at) {
        Some((Tok::Ident(s), line)) => vec![(s.clone(), *line)],
        Some((Tok::Punct('*'), line)) => vec![("*".to_string(), *line)],
        Some((Tok::Punct('{'), _)) => {
            let mut heads = Vec::new();
            let mut depth = 0;
            let mut expect_head = true;
            for (tok, line) in &toks[at..] {
                match tok {
                    Tok::Punct('{') => {
                        depth += 1;
                        if depth > 1 {
                            expect_head = false;
                        }
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => expect_head = true,
                    Tok::Ident(s) if depth == 1 && expect_head => {
                        heads.push((s.clone(), *line));
                        expect_head = false;
                    }
                    Tok::Punct('*') if depth == 1 && expect_head => {
                        heads.push(("*".to_string(), *line));
                        expect_head = false;
                    }
                    _ => {}
                }
            }
            heads
        }
        _ => Vec::new(),
    }
}

/// For a path `target::rest` starting at `toks[at]`, the names `rest` begins with (second
/// path segments); nothing for a group of top-level modules or the module alone.
fn inside(toks: &[(Tok, usize)], at: usize) -> Vec<String> {
    let simple = matches!(toks.get(at), Some((Tok::Ident(_), _)));
    if simple && is(toks.get(at + 1), &Tok::PathSep) {
        path_heads(toks, at + 2)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    } else {
        Vec::new()
    }
}

/// One reference from a file to a top-level module of the crate.
#[derive(Debug, PartialEq, Eq)]
struct Use {
    line: usize,
    /// The top-level module named (`api`), or `*` for a glob.
    target: String,
    /// What the path names inside `target` (`jws` for `crate::tokens::jws::x`, both names of
    /// `crate::tokens::{jws, keys}`); empty for the module itself.
    inside: Vec<String>,
    /// How it was written, for the message (`crate::`, `super::super::`, `tokenwarden::`).
    via: String,
}

/// Every top-level module `text` reaches through `crate::`, through `super::` chains that climb
/// to the crate root from `module` (the file's module path), or, with `extern_name`, through
/// `<extern_name>::` (the binary naming the library).
fn uses(text: &str, module: &[String], extern_name: Option<&str>) -> Vec<Use> {
    let toks = tokens(&blank_comments_and_literals(text));
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) deepen the module path for `super::`.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (tok, _) = &toks[i];
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(name), true) = (
                    ident(toks.get(i + 1)),
                    is(toks.get(i + 2), &Tok::Punct('{')),
                ) {
                    inline.push((depth + 1, name.to_string()));
                }
            }
            Tok::Ident(kw) if kw == "crate" || Some(kw.as_str()) == extern_name => {
                let after_dollar = i > 0 && is(toks.get(i - 1), &Tok::Punct('$'));
                let mid_path = i > 0 && is(toks.get(i - 1), &Tok::PathSep);
                if !after_dollar && !mid_path && is(toks.get(i + 1), &Tok::PathSep) {
                    for (target, line) in path_heads(&toks, i + 2) {
                        out.push(Use {
                            line,
                            inside: inside(&toks, i + 2),
                            target,
                            via: format!("{kw}::"),
                        });
                    }
                }
            }
            Tok::Ident(kw) if kw == "super" => {
                let starts_path = i == 0 || !is(toks.get(i - 1), &Tok::PathSep);
                let mut supers = 0;
                let mut j = i;
                while ident(toks.get(j)) == Some("super") && is(toks.get(j + 1), &Tok::PathSep) {
                    supers += 1;
                    j += 2;
                }
                let here = module.len() + inline.len();
                if starts_path && supers > 0 && supers >= here {
                    for (target, line) in path_heads(&toks, j) {
                        out.push(Use {
                            line,
                            inside: inside(&toks, j),
                            target,
                            via: "super::".repeat(supers),
                        });
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn row(module: &str) -> Option<&'static [&'static str]> {
    TABLE
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, may)| *may)
}

/// Everything that breaks the table in one file, one line per violation.
fn table_violations(file: &SourceFile) -> Vec<String> {
    let mut out = Vec::new();
    match file.kind {
        FileKind::LibRoot => {}
        FileKind::BinRoot => {
            for u in uses(&file.text, &[], Some("tokenwarden")) {
                if u.via == "tokenwarden::" && !MAIN_MAY_USE.contains(&u.target.as_str()) {
                    out.push(format!(
                        "{}:{}: main.rs may only call `cli`, but it uses `tokenwarden::{}`",
                        file.shown, u.line, u.target
                    ));
                }
            }
        }
        FileKind::Module => {
            let Some(own) = file.module.first() else {
                return out;
            };
            let Some(may) = row(own) else {
                out.push(format!(
                    "{}:1: module `{own}` has no row in the STYLE.md module table; add the row \
                     there and to TABLE in tests/tidy.rs",
                    file.shown
                ));
                return out;
            };
            for u in uses(&file.text, &file.module, None) {
                let target = u.target.as_str();
                if target == own.as_str() {
                    continue;
                }
                let known = row(target).is_some();
                if !known {
                    out.push(format!(
                        "{}:{}: `{}{target}` is not a module of the STYLE.md table (module \
                         `{own}` may use only: {})",
                        file.shown,
                        u.line,
                        u.via,
                        shown_list(may)
                    ));
                } else if !may.contains(&target) {
                    out.push(format!(
                        "{}:{}: module `{own}` must not use `{target}` (`{}{target}`); its row \
                         in the STYLE.md module table allows only: {}",
                        file.shown,
                        u.line,
                        u.via,
                        shown_list(may)
                    ));
                }
            }
        }
    }
    out
}

/// Uses of items inside a module that [`INSIDE_RULES`] does not allow, outside test modules.
fn inside_violations(file: &SourceFile) -> Vec<String> {
    let (Some(own), FileKind::Module) = (file.module.first(), file.kind) else {
        return Vec::new();
    };
    let code = file.text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    for u in uses(code, &file.module, None) {
        let Some((_, _, allowed)) = INSIDE_RULES
            .iter()
            .find(|(m, t, _)| m == own && *t == u.target)
        else {
            continue;
        };
        for item in u.inside.iter().filter(|i| !allowed.contains(&i.as_str())) {
            out.push(format!(
                "{}:{}: module `{own}` may name only {} inside `{}`, not `{}{}::{item}`",
                file.shown,
                u.line,
                shown_list(allowed),
                u.target,
                u.via,
                u.target
            ));
        }
    }
    out
}

/// The string literals of `text` (contents of `"…"`, no escapes resolved), with their lines:
/// the spans `blank_comments_and_literals` blanks that open with a quote.
fn string_literals(text: &str) -> Vec<(usize, String)> {
    let blanked: Vec<char> = blank_comments_and_literals(text).chars().collect();
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        let in_blank = blanked.get(i) == Some(&' ');
        if in_blank && chars[i] == '/' && matches!(chars.get(i + 1), Some('/' | '*')) {
            // A comment: skip its blanked span (a quote in it is prose, not a literal).
            let line_comment = chars[i + 1] == '/';
            i += 2;
            while i < chars.len() {
                if line_comment && chars[i] == '\n' {
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                if !line_comment && chars[i] == '/' && chars[i - 1] == '*' {
                    i += 1;
                    break;
                }
                i += 1;
            }
            continue;
        }
        if chars[i] == '"' && in_blank {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && !(chars[j] == '"' && chars[j - 1] != '\\') {
                j += 1;
            }
            out.push((line, chars[start..j.min(chars.len())].iter().collect()));
            line += chars[start..j.min(chars.len())]
                .iter()
                .filter(|c| **c == '\n')
                .count();
            i = j + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// The names `wellknown.rs` defines that are distinctive enough to recognise elsewhere:
/// annotation and label keys, API groups, metric names (value, constant name).
fn wellknown_names() -> Vec<(String, String)> {
    let text = fs::read_to_string(src_dir().join("wellknown.rs"))
        .unwrap_or_else(|e| panic!("read wellknown.rs: {e}"));
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub(crate) const ") {
            pending = rest.split(':').next().map(str::to_string);
        }
        if let (Some(name), Some(start)) = (&pending, line.find('"')) {
            let value = line[start + 1..].split('"').next().unwrap_or_default();
            let key_like = !value.contains(' ')
                && ((value.contains('/') && !value.starts_with('/'))
                    || value.matches('.').count() >= 2);
            let metric_like = value.matches('_').count() >= 2
                && value.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if key_like || metric_like {
                out.push((value.to_string(), name.clone()));
            }
            pending = None;
        } else if line.ends_with(';') {
            pending = None;
        }
    }
    out
}

fn shown_list(may: &[&str]) -> String {
    if may.is_empty() {
        "nothing".to_string()
    } else {
        may.join(", ")
    }
}

/// Every place in `text` that reads the wall clock, as (line, `Type::function`).
fn wall_clock_reads(text: &str) -> Vec<(usize, String)> {
    let toks = tokens(&blank_comments_and_literals(text));
    let mut out = Vec::new();
    for w in toks.windows(3) {
        if let [
            (Tok::Ident(ty), line),
            (Tok::PathSep, _),
            (Tok::Ident(f), _),
        ] = w
            && WALL_CLOCK_READS.contains(&(ty.as_str(), f.as_str()))
        {
            out.push((*line, format!("{ty}::{f}")));
        }
    }
    out
}

#[track_caller]
fn assert_none(what: &str, violations: &[String]) {
    if !violations.is_empty() {
        let mut msg = format!("{what} ({} found):\n", violations.len());
        for v in violations {
            let _ = writeln!(msg, "  {v}");
        }
        panic!("{msg}");
    }
}

/// The `.rs` files of the workspace's other crates (`crates/*/src`), as `SourceFile`s with no
/// module path: only their `//!` header is checked.
fn workspace_crate_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(crates) = fs::read_dir(root.join("crates")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = crates
        .filter_map(Result::ok)
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter()
        .flat_map(|dir| rust_files(dir))
        .map(|path| SourceFile {
            shown: path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string(),
            module: Vec::new(),
            kind: FileKind::Module,
            text: fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        })
        .collect()
}

#[test]
fn every_source_file_starts_with_a_module_header() {
    let mut bad = Vec::new();
    for file in source_files().into_iter().chain(workspace_crate_files()) {
        let first = file.text.lines().next().unwrap_or_default();
        if !first.starts_with("//!") {
            bad.push(format!(
                "{}:1: the file must open with a `//!` header saying what it owns and what it \
                 must not do (STYLE.md habit 3), found {first:?}",
                file.shown
            ));
        }
    }
    assert_none("files without a //! header", &bad);
}

#[test]
fn modules_use_only_what_their_row_of_the_module_table_allows() {
    let files = source_files();
    assert!(
        files.iter().any(|f| f.kind == FileKind::LibRoot),
        "no src/lib.rs under {}",
        src_dir().display()
    );
    let bad: Vec<String> = files.iter().flat_map(table_violations).collect();
    assert_none(
        "uses that break the STYLE.md module table (rules 1, 2 and 9)",
        &bad,
    );
}

#[test]
fn modules_name_only_the_items_inside_a_module_their_rule_allows() {
    let bad: Vec<String> = source_files().iter().flat_map(inside_violations).collect();
    assert_none("uses inside a module that STYLE.md's rooms forbid", &bad);
}

/// STYLE.md rule 7: a name `wellknown` defines is used from there, never spelled out again
/// (test modules may spell out what they check).
#[test]
fn wellknown_names_are_not_spelled_out_elsewhere() {
    let names = wellknown_names();
    assert!(
        names
            .iter()
            .any(|(v, _)| v == "serviceaccount_stale_tokens_total"),
        "wellknown_names found no metric names: {names:?}"
    );
    let mut bad = Vec::new();
    for file in source_files() {
        if file.shown == "src/wellknown.rs" {
            continue;
        }
        let code = file.text.split("#[cfg(test)]").next().unwrap_or_default();
        for (line, lit) in string_literals(code) {
            if let Some((_, name)) = names.iter().find(|(v, _)| *v == lit) {
                bad.push(format!(
                    "{}:{line}: {lit:?} is `wellknown::{name}`; use the constant",
                    file.shown
                ));
            }
        }
    }
    assert_none(
        "names spelled out again instead of taken from wellknown",
        &bad,
    );
}

#[test]
fn the_inside_rules_and_literal_scan_find_what_they_should() {
    let toks = tokens(&blank_comments_and_literals(
        "use crate::tokens::{jws, keys};\nuse crate::tokens::issuer::Signer;",
    ));
    let found: Vec<Vec<String>> = uses(
        "use crate::tokens::{jws, keys};\nuse crate::tokens::issuer::Signer;",
        &["controllers".to_string()],
        None,
    )
    .into_iter()
    .map(|u| u.inside)
    .collect();
    assert!(!toks.is_empty());
    assert_eq!(
        found,
        vec![
            vec!["jws".to_string(), "keys".to_string()],
            vec!["issuer".to_string()]
        ]
    );
    let lits = string_literals(
        "let a = \"x/y\"; // \"not\"\nlet b = 'c'; let d = \"a\\\"b\"; /* \"no\" */ let e = \"e\";",
    );
    assert_eq!(
        lits,
        vec![
            (1, "x/y".to_string()),
            (2, "a\\\"b".to_string()),
            (2, "e".to_string())
        ]
    );
}

#[test]
fn only_clock_reads_the_system_time() {
    let mut bad = Vec::new();
    for file in source_files() {
        if file.module.first().map(String::as_str) == Some(TIME_SOURCE) {
            continue;
        }
        for (line, call) in wall_clock_reads(&file.text) {
            bad.push(format!(
                "{}:{line}: `{call}` reads the system time; take a `clock::Clock` instead \
                 (STYLE.md rule 7; unit tests use `clock::FakeClock` or a fixed timestamp)",
                file.shown
            ));
        }
    }
    assert_none("reads of the system time outside `clock`", &bad);
}

// The checks above are only as good as the lexer; these pin down its corner cases.

#[test]
fn comments_and_literals_are_not_read_as_code() {
    let text = concat!(
        "//! Uses crate::cli in a doc comment.\n",
        "/* crate::cli /* nested crate::cli */ still a comment crate::cli */\n",
        "const A: &str = \"crate::cli \\\" crate::cli\";\n",
        "const B: &str = r#\"crate::cli \" crate::cli\"#;\n",
        "const C: &[u8] = br\"crate::cli\";\n",
        "const D: char = '\"'; const E: char = '\\''; fn f<'a>(x: &'a str) {}\n",
        "use crate::clock::Clock; // crate::cli\n",
    );
    let found = uses(text, &["api".to_string()], None);
    assert_eq!(
        found,
        vec![Use {
            line: 7,
            target: "clock".into(),
            inside: vec!["Clock".into()],
            via: "crate::".into()
        }]
    );
    assert!(wall_clock_reads("// SystemTime::now()\nlet s = \"Timestamp::now\";").is_empty());
    assert_eq!(
        wall_clock_reads("let a = 1;\nlet t = jiff::Timestamp::now();"),
        vec![(2, "Timestamp::now".to_string())]
    );
    assert!(wall_clock_reads("let t = std::time::Instant::now();").is_empty());
}

#[test]
fn groups_globs_and_super_chains_are_resolved() {
    let text = "use crate::{\n    api::{self, Status},\n    clock,\n};\nuse crate::*;\n\
                fn f() { let _ = crate::tokens::x(); }\n";
    let targets: Vec<(usize, String)> = uses(text, &["registry".to_string()], None)
        .into_iter()
        .map(|u| (u.line, u.target))
        .collect();
    let expected = [(2, "api"), (3, "clock"), (5, "*"), (6, "tokens")];
    assert_eq!(
        targets,
        expected.map(|(l, t)| (l, t.to_string())).to_vec(),
        "{text}"
    );
    // From src/registry/mod.rs, `super::` is the crate root; from a submodule it is not.
    let registry = ["registry".to_string()];
    let resources = ["registry".to_string(), "resources".to_string()];
    let text = "use super::store::Store;\n";
    assert_eq!(uses(text, &registry, None)[0].target, "store");
    assert!(uses(text, &resources, None).is_empty());
    let text = "use super::super::api::Status;\n";
    assert_eq!(uses(text, &resources, None)[0].target, "api");
    // Inside `mod tests { … }` one more `super::` is needed to climb out.
    let text =
        "mod tests {\n    use super::super::api;\n    use super::helper;\n}\nuse super::cli;\n";
    let found: Vec<(usize, String)> = uses(text, &registry, None)
        .into_iter()
        .map(|u| (u.line, u.target))
        .collect();
    assert_eq!(found, vec![(2, "api".to_string()), (5, "cli".to_string())]);
    // `pub(crate)`, `pub(super)` and `$crate::` are not paths into other modules.
    let text = "pub(crate) fn a() {}\npub(super) fn b() {}\nmacro_rules! m { () => { $crate::cli::x() } }\n";
    assert!(uses(text, &resources, None).is_empty());
}

#[test]
fn the_table_forbids_what_style_md_forbids() {
    for (module, may) in TABLE {
        assert!(
            !may.contains(&"cli") && !may.contains(module),
            "{module}: nothing may use cli, and a row does not name itself"
        );
    }
    for client in ["agent", "diagnose"] {
        let may = row(client).unwrap_or_default();
        for server in [
            "pki",
            "store",
            "registry",
            "tokens",
            "admission",
            "controllers",
            "api",
        ] {
            assert!(!may.contains(&server), "{client} must not use {server}");
        }
    }
    for server in ["api", "server"] {
        let may = row(server).unwrap_or_default();
        for client in ["agent", "diagnose"] {
            assert!(!may.contains(&client), "{server} must not use {client}");
        }
    }
}
