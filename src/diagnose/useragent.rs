//! Names the client library behind a request from its `User-Agent`, and knows the oldest
//! version of each official Kubernetes client that re-reads a rotated service-account token.
//!
//! Owns: the User-Agent parser ([`parse`]), the version comparison ([`compare_versions`]) and the
//! table of minimum reloading versions from seed 000 / `shared/reference/users-and-clients.md`
//! §4 (Go ≥ v0.15.7, Python ≥ 12.0.0, Java ≥ 9.0.0, JavaScript ≥ 0.10.3, C# ≥ 7.0.5,
//! Haskell ≥ 0.3.0.0).
//! Must not: do I/O. It is pure so that the table test can pin every pattern.
//!
//! What the clients send (users-and-clients.md §4, confirmed by experiment where noted):
//! * client-go programs: `<binary>/<version> (<os>/<arch>) kubernetes/<commit>`
//!   (`rest.DefaultKubernetesUserAgent`); kubectl's version is the Kubernetes release
//!   `v1.X.Y`, which ships client-go `v0.X.Y` (confirmed: `kubectl.1.33/v1.33.1 (…)`).
//!   A program built from modules without ldflags reports `v0.0.0-master+$Format:%H$`,
//!   which says nothing about its client-go, so its version is unknown.
//! * Python: `OpenAPI-Generator/<client version>/python` (confirmed for 11.0.0 and 37.0.2);
//!   clients before the generator switch sent `Swagger-Codegen/<version>/python`.
//! * JavaScript: 2.x sends `kubernetes-client-javascript/<version>` (code); 1.x sends
//!   `node-fetch/1.0 (+https://github.com/bitinn/node-fetch)` with no client version and
//!   0.10.x sends no User-Agent at all (confirmed). Neither can be judged.
//! * Java, C# and Haskell: the generator conventions `OpenAPI-Generator/<v>/java`,
//!   `Swagger-Codegen/<v>/java`, `KubernetesClient/<v>` / `kubernetes-csharp-client/<v>` and
//!   `kubernetes-client-haskell/<v>`. These are not confirmed against the real clients.
//! * kube-rs sends no User-Agent (confirmed), like `@kubernetes/client-node` 0.10.x.

use std::cmp::Ordering;

use serde::Serialize;

/// The language of a client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) enum Language {
    Go,
    Python,
    Java,
    JavaScript,
    #[serde(rename = "C#")]
    CSharp,
    Haskell,
    Ruby,
    Unknown,
}

impl Language {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Language::Go => "Go",
            Language::Python => "Python",
            Language::Java => "Java",
            Language::JavaScript => "JavaScript",
            Language::CSharp => "C#",
            Language::Haskell => "Haskell",
            Language::Ruby => "Ruby",
            Language::Unknown => "unknown",
        }
    }

    /// The oldest official client of this language that reloads the token file (seed 000).
    /// Ruby's table entry is "master branch", which no version can be compared with.
    pub(crate) fn min_reloading_version(self) -> Option<&'static str> {
        match self {
            Language::Go => Some("0.15.7"),
            Language::Python => Some("12.0.0"),
            Language::Java => Some("9.0.0"),
            Language::JavaScript => Some("0.10.3"),
            Language::CSharp => Some("7.0.5"),
            Language::Haskell => Some("0.3.0.0"),
            Language::Ruby | Language::Unknown => None,
        }
    }
}

/// What a User-Agent says about the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientInfo {
    pub(crate) language: Language,
    /// The library or program, e.g. `client-go (kubectl)`, `kubernetes (python)`.
    pub(crate) library: String,
    /// The client library's version (client-go's `0.X.Y` for Go programs), when known.
    pub(crate) version: Option<String>,
    /// Set when the version is below the table: the version to upgrade to.
    pub(crate) upgrade_to: Option<String>,
    /// A short human explanation (why the version is unknown, what it maps to).
    pub(crate) note: String,
}

/// Parses a User-Agent header value.
pub(crate) fn parse(user_agent: &str) -> ClientInfo {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return unknown(
            Language::Unknown,
            "no User-Agent",
            "sent no User-Agent: kube-rs, @kubernetes/client-node 0.10.x or a raw HTTP client",
        );
    }
    if let Some(info) = generator(ua) {
        return info;
    }
    if ua.starts_with("node-fetch/") {
        return unknown(
            Language::JavaScript,
            "node-fetch",
            "JavaScript-like client without a version (@kubernetes/client-node 1.x sends this)",
        );
    }
    if let Some(v) = ua.strip_prefix("kubernetes-client-javascript/") {
        return judged(
            Language::JavaScript,
            "@kubernetes/client-node",
            first_token(v),
        );
    }
    for prefix in ["KubernetesClient/", "kubernetes-csharp-client/"] {
        if let Some(v) = ua.strip_prefix(prefix) {
            return judged(Language::CSharp, "KubernetesClient (C#)", first_token(v));
        }
    }
    if let Some(v) = ua.strip_prefix("kubernetes-client-haskell/") {
        return judged(
            Language::Haskell,
            "kubernetes-client (Haskell)",
            first_token(v),
        );
    }
    if let Some(v) = ua.strip_prefix("Kubeclient/") {
        return unknown_version(Language::Ruby, "kubeclient (Ruby)", first_token(v));
    }
    if let Some(info) = client_go(ua) {
        return info;
    }
    let product = ua.split('/').next().unwrap_or(ua);
    unknown(Language::Unknown, product, "not a known Kubernetes client")
}

/// `OpenAPI-Generator/<v>/<lang>` and `Swagger-Codegen/<v>/<lang>`.
fn generator(ua: &str) -> Option<ClientInfo> {
    let first = ua.split_whitespace().next().unwrap_or(ua);
    let mut parts = first.split('/');
    let tool = parts.next()?;
    if tool != "OpenAPI-Generator" && tool != "Swagger-Codegen" {
        return None;
    }
    let version = parts.next()?;
    let lang = parts.next().unwrap_or_default().to_ascii_lowercase();
    let (language, library) = match lang.as_str() {
        "python" => (Language::Python, "kubernetes (Python)"),
        "java" => (Language::Java, "client-java"),
        "javascript" | "typescript" => (Language::JavaScript, "@kubernetes/client-node"),
        "csharp" => (Language::CSharp, "KubernetesClient (C#)"),
        "haskell" => (Language::Haskell, "kubernetes-client (Haskell)"),
        "ruby" => (Language::Ruby, "kubeclient (Ruby)"),
        _ => {
            return Some(unknown(
                Language::Unknown,
                tool,
                "generated client, unknown language",
            ));
        }
    };
    Some(judged(language, library, version))
}

/// `rest.DefaultKubernetesUserAgent`: `<binary>/<version> (<os>/<arch>) kubernetes/<commit>`.
fn client_go(ua: &str) -> Option<ClientInfo> {
    let mut words = ua.split_whitespace();
    let first = words.next()?;
    let platform = words.next()?;
    let commit = words.next()?;
    if !(platform.starts_with('(') && platform.ends_with(')') && commit.starts_with("kubernetes/"))
    {
        return None;
    }
    let (binary, version) = first.split_once('/')?;
    let library = format!("client-go ({binary})");
    let numbers = numeric_parts(version);
    // A Kubernetes release v1.X.Y ships client-go v0.X.Y; v0.0.0-master is an unstamped build.
    let client_go = match numbers.as_slice() {
        [1, minor, patch, ..] => Some(format!("0.{minor}.{patch}")),
        [0, 0, 0, ..] | [] => None,
        [0, minor, patch, ..] => Some(format!("0.{minor}.{patch}")),
        _ => None,
    };
    Some(match client_go {
        Some(v) => {
            let mut info = judged(Language::Go, &library, &v);
            info.note = format!("{binary} {version} uses client-go v{v}");
            info
        }
        None => unknown(
            Language::Go,
            &library,
            "client-go program without a stamped version",
        ),
    })
}

fn first_token(v: &str) -> &str {
    v.split([' ', '/', ';']).next().unwrap_or(v)
}

fn judged(language: Language, library: &str, version: &str) -> ClientInfo {
    let version = version.trim_start_matches('v').to_owned();
    let upgrade_to = language.min_reloading_version().and_then(|min| {
        (compare_versions(&version, min) == Ordering::Less).then(|| min.to_owned())
    });
    let note = match &upgrade_to {
        Some(min) => format!(
            "{} client {version} does not reload a rotated token (needs ≥ {min})",
            language.name()
        ),
        None => format!("{} client {version} reloads tokens", language.name()),
    };
    ClientInfo {
        language,
        library: library.to_owned(),
        version: Some(version),
        upgrade_to,
        note,
    }
}

fn unknown_version(language: Language, library: &str, version: &str) -> ClientInfo {
    ClientInfo {
        language,
        library: library.to_owned(),
        version: Some(version.trim_start_matches('v').to_owned()),
        upgrade_to: None,
        note: "no released version is known to reload tokens (seed 000: master branch)".into(),
    }
}

fn unknown(language: Language, library: &str, note: &str) -> ClientInfo {
    ClientInfo {
        language,
        library: library.to_owned(),
        version: None,
        upgrade_to: None,
        note: note.to_owned(),
    }
}

/// The leading numeric components of a version: `v1.33.1-rc.0` is `[1, 33, 1]`,
/// `12.0.0a1` is `[12, 0, 0]`.
pub(crate) fn numeric_parts(version: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in version.trim_start_matches('v').split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let Ok(n) = digits.parse::<u64>() else { break };
        out.push(n);
        if digits.len() != part.len() {
            break;
        }
    }
    out
}

/// Compares two dotted versions numerically; missing components count as 0.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (numeric_parts(a), numeric_parts(b));
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// client-go's minor version (`0.X.Y` → X) for a Go client, when known.
pub(crate) fn client_go_minor(info: &ClientInfo) -> Option<u64> {
    if info.language != Language::Go {
        return None;
    }
    numeric_parts(info.version.as_deref()?).get(1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_table() {
        // (User-Agent, language, version, upgrade to)
        let table: &[(&str, Language, Option<&str>, Option<&str>)] = &[
            (
                "kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19",
                Language::Go,
                Some("0.20.2"),
                None,
            ),
            (
                "kubectl.1.33/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
                Language::Go,
                Some("0.33.1"),
                None,
            ),
            (
                "kube-proxy/v1.14.3 (linux/amd64) kubernetes/5e53fd6",
                Language::Go,
                Some("0.14.3"),
                Some("0.15.7"),
            ),
            (
                "my-operator/v0.15.6 (linux/amd64) kubernetes/abc",
                Language::Go,
                Some("0.15.6"),
                Some("0.15.7"),
            ),
            (
                "manager/v0.0.0-master+$Format:%H$ (linux/amd64) kubernetes/$Format",
                Language::Go,
                None,
                None,
            ),
            (
                "OpenAPI-Generator/11.0.0/python",
                Language::Python,
                Some("11.0.0"),
                Some("12.0.0"),
            ),
            (
                "OpenAPI-Generator/37.0.2/python",
                Language::Python,
                Some("37.0.2"),
                None,
            ),
            (
                "Swagger-Codegen/10.0.1/python",
                Language::Python,
                Some("10.0.1"),
                Some("12.0.0"),
            ),
            (
                "OpenAPI-Generator/8.0.2/java",
                Language::Java,
                Some("8.0.2"),
                Some("9.0.0"),
            ),
            (
                "OpenAPI-Generator/21.0.0/java",
                Language::Java,
                Some("21.0.0"),
                None,
            ),
            (
                "kubernetes-client-javascript/2.0.1",
                Language::JavaScript,
                Some("2.0.1"),
                None,
            ),
            (
                "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
                Language::JavaScript,
                None,
                None,
            ),
            (
                "KubernetesClient/7.0.4",
                Language::CSharp,
                Some("7.0.4"),
                Some("7.0.5"),
            ),
            (
                "kubernetes-csharp-client/13.0.11",
                Language::CSharp,
                Some("13.0.11"),
                None,
            ),
            (
                "kubernetes-client-haskell/0.2.0.0",
                Language::Haskell,
                Some("0.2.0.0"),
                Some("0.3.0.0"),
            ),
            (
                "OpenAPI-Generator/0.3.0.0/haskell",
                Language::Haskell,
                Some("0.3.0.0"),
                None,
            ),
            ("Kubeclient/4.11.0", Language::Ruby, Some("4.11.0"), None),
            ("", Language::Unknown, None, None),
            ("curl/8.5.0", Language::Unknown, None, None),
        ];
        for (ua, language, version, upgrade) in table {
            let got = parse(ua);
            assert_eq!(got.language, *language, "{ua}: {got:?}");
            assert_eq!(got.version.as_deref(), *version, "{ua}: {got:?}");
            assert_eq!(got.upgrade_to.as_deref(), *upgrade, "{ua}: {got:?}");
        }
    }

    #[test]
    fn node_fetch_is_javascript_like_and_unjudged() {
        let got = parse("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)");
        assert!(got.note.contains("without a version"), "{got:?}");
    }

    #[test]
    fn versions_compare_numerically() {
        use Ordering::*;
        let table = [
            ("12.0.0", "12.0.0", Equal),
            ("11.0.0", "12.0.0", Less),
            ("0.15.10", "0.15.7", Greater),
            ("v0.15.7", "0.15.7", Equal),
            ("0.3.0.0", "0.3", Equal),
            ("0.2.9.9", "0.3.0.0", Less),
            ("12.0.0a1", "12.0.0", Equal),
            ("7.0.5", "7.0.13", Less),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn client_go_minor_of_kubectl() {
        let info = parse("kubectl/v1.29.3 (linux/amd64) kubernetes/6813625");
        assert_eq!(client_go_minor(&info), Some(29));
        assert_eq!(
            client_go_minor(&parse("OpenAPI-Generator/29.0.0/python")),
            None
        );
    }
}
