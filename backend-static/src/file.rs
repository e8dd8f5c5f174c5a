//! The peers file: reading (bounded), change detection, parsing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::entry::{self, Entry, EntryErrorKind};
use crate::{PeerEntry, ProbeConfig};

/// Default of `max_file_bytes`: larger files are refused. 64 MiB holds
/// about 200,000 short entries (the daemon serves 100k peers).
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The file as a table: `peers = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    #[serde(default)]
    peers: Vec<PeerEntry>,
}

/// What one look at the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// Bytes and their hash.
    Bytes(u64, Vec<u8>),
    /// The file cannot be read (missing, unreadable, too big).
    Unreadable(String),
}

impl Content {
    /// A fingerprint: equal fingerprints mean nothing changed.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        match self {
            Content::Bytes(h, b) => Fingerprint::Bytes(*h, b.len()),
            Content::Unreadable(e) => Fingerprint::Unreadable(e.clone()),
        }
    }
}

/// Identifies a version of the file (or of its failure to read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fingerprint {
    Bytes(u64, usize),
    Unreadable(String),
}

/// Reads the whole file, at most `max` bytes.
pub(crate) fn read(path: &Path, max: u64) -> Content {
    let res = (|| -> std::io::Result<Result<Vec<u8>, String>> {
        let f = std::fs::File::open(path)?;
        let mut buf = Vec::new();
        f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
        if buf.len() as u64 > max {
            return Ok(Err(too_large(max)));
        }
        Ok(Ok(buf))
    })();
    match res {
        Ok(Ok(buf)) => {
            let mut h = DefaultHasher::new();
            buf.hash(&mut h);
            Content::Bytes(h.finish(), buf)
        }
        Ok(Err(e)) => Content::Unreadable(e),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Content::Unreadable("not found".to_owned())
        }
        Err(e) => Content::Unreadable(format!("cannot read: {e}")),
    }
}

/// The refusal of a too large file: the limit, and the key that raises it.
fn too_large(max: u64) -> String {
    format!(
        "larger than {} ({max} bytes); raise `max_file_bytes` in the source's config to read it",
        human_bytes(max)
    )
}

/// `8 MiB`, `1.5 GiB`, `100 KiB`, `512 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let text = format!("{v:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
    Unknown,
}

fn format_of(path: &Path) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("toml") => Format::Toml,
        Some("json") => Format::Json,
        _ => Format::Unknown,
    }
}

/// Parses and validates the file's peers. The error says where (key path or
/// line) and what.
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    probe: Option<&ProbeConfig>,
    inline: &[Entry],
) -> Result<Vec<Entry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let raw = match format_of(path) {
        Format::Toml => parse_toml(text)?,
        Format::Json => parse_json(text)?,
        Format::Unknown => match parse_json(text) {
            Ok(v) => v,
            Err(json) => parse_toml(text)
                .map_err(|toml| format!("neither JSON ({json}) nor TOML ({toml})"))?,
        },
    };
    entry::validate(&raw, probe, inline).map_err(|e| match e.error {
        EntryErrorKind::Reason(r) => format!("peers{}: {r}", e.key),
        EntryErrorKind::Addr(a) => format!("peers{}: {a}", e.key),
    })
}

fn parse_toml(text: &str) -> Result<Vec<PeerEntry>, String> {
    toml::from_str::<PeerFile>(text)
        .map(|f| f.peers)
        .map_err(|e| e.to_string().trim_end().replace('\n', " "))
}

fn parse_json(text: &str) -> Result<Vec<PeerEntry>, String> {
    let first = text.trim_start().chars().next();
    let res = if first == Some('[') {
        serde_json::from_str::<Vec<PeerEntry>>(text)
    } else {
        serde_json::from_str::<PeerFile>(text).map(|f| f.peers)
    };
    res.map_err(|e| e.to_string())
}

/// The file's path as shown in messages.
pub(crate) fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The watched file's state inside one run.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) path: PathBuf,
    /// The version last looked at (good or bad).
    pub(crate) seen: Option<Fingerprint>,
    /// Entries of the last good version.
    pub(crate) good: Vec<Entry>,
    /// Why the current version is refused, if it is.
    pub(crate) error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, text: &str) -> Result<Vec<Entry>, String> {
        parse(Path::new(name), text.as_bytes(), None, &[])
    }

    #[test]
    fn every_format() {
        let toml_a = "peers = [{ id = \"a\", addrs = [\"1.2.3.4:1\"] }]";
        let toml_b = "[[peers]]\nid = \"a\"\naddrs = [\"1.2.3.4:1\"]\n";
        let json_a = r#"{"peers": [{"id": "a", "addrs": ["1.2.3.4:1"]}]}"#;
        let json_b = r#" [{"id": "a", "addrs": ["1.2.3.4:1"]}]"#;
        for (name, text) in [
            ("x.toml", toml_a),
            ("x.toml", toml_b),
            ("x.json", json_a),
            ("x.json", json_b),
            ("x", toml_a),
            ("x", toml_b),
            ("x.conf", json_a),
            ("x", json_b),
        ] {
            let e = p(name, text).unwrap_or_else(|e| panic!("{name} {text}: {e}"));
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].key, "a");
        }
        assert_eq!(
            p("x.toml", "").expect("empty file is an empty list").len(),
            0
        );
    }

    #[test]
    fn errors_say_where() {
        let e = p(
            "x.toml",
            "peers = [{ id = \"a\" }, { id = \"b\", addrs = [\"bad host:1\"] }]",
        )
        .expect_err("refused");
        assert!(e.starts_with("peers[1].addrs[0]: invalid address"), "{e}");
        let e = p("x.json", r#"{"peers": [{"id": "a", "adrs": []}]}"#).expect_err("refused");
        assert!(
            e.contains("unknown field `adrs`") && e.contains("line 1"),
            "{e}"
        );
        let e = p("x", "peers = [").expect_err("refused");
        assert!(e.starts_with("neither JSON"), "{e}");
        let e = p("x.toml", "peers = [{ id = \"a\" }, { id = \"a\" }]").expect_err("refused");
        assert_eq!(e, "peers[1].id: duplicate id `a` (also peers[0])");
    }

    #[test]
    fn duplicates_of_the_inline_list_are_refused() {
        let inline = entry::validate(
            &[PeerEntry {
                id: Some("a".into()),
                ..Default::default()
            }],
            None,
            &[],
        )
        .expect("valid");
        let e = parse(
            Path::new("x.toml"),
            b"peers = [{ id = \"a\" }]",
            None,
            &inline,
        )
        .expect_err("refused");
        assert_eq!(e, "peers[0].id: duplicate id `a` (also inline peers[0])");
    }

    #[test]
    fn read_reports_missing_and_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        let max = DEFAULT_MAX_FILE_BYTES;
        assert_eq!(read(&path, max), Content::Unreadable("not found".into()));
        std::fs::write(&path, "a").expect("write");
        let a = read(&path, max).fingerprint();
        std::fs::write(&path, "b").expect("write");
        let b = read(&path, max).fingerprint();
        assert_ne!(a, b);
        assert_eq!(b, read(&path, max).fingerprint());
    }

    #[test]
    fn the_size_limit_says_its_value_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, vec![b' '; 3000]).expect("write");
        assert!(matches!(read(&path, 3000), Content::Bytes(_, b) if b.len() == 3000));
        assert_eq!(
            read(&path, 2048),
            Content::Unreadable(
                "larger than 2 KiB (2048 bytes); raise `max_file_bytes` in the source's config to read it"
                    .into()
            )
        );
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(8 * 1024 * 1024), "8 MiB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(human_bytes(DEFAULT_MAX_FILE_BYTES), "64 MiB");
    }
}
