//! Configuration diagnostics: errors and warnings collected with the byte
//! span they concern, turned into 1-based line and column (in characters)
//! and sorted by position when reading ends.

use std::fmt;
use std::ops::Range;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, with its position in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {kind}: {}", self.line, self.column, self.message)
    }
}

/// Collects diagnostics while a file is read.
pub(crate) struct Diags<'s> {
    source: &'s str,
    items: Vec<(usize, Severity, String)>,
}

impl<'s> Diags<'s> {
    pub fn new(source: &'s str) -> Self {
        Diags {
            source,
            items: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items
            .push((span.start, Severity::Error, message.into()));
    }

    pub fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items
            .push((span.start, Severity::Warning, message.into()));
    }

    /// A TOML or serde error: its own span when it has one, else `fallback`.
    pub fn toml(&mut self, err: &toml::de::Error, fallback: Range<usize>) {
        let span = err.span().unwrap_or(fallback);
        self.error(span, err.message().trim_end().to_owned());
    }

    pub fn line_col(&self, at: usize) -> (usize, usize) {
        line_col(self.source, at)
    }

    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|a| (a.0, a.1));
        self.items.dedup();
        self.items
            .into_iter()
            .map(|(at, severity, message)| {
                let (line, column) = line_col(self.source, at);
                Diagnostic {
                    severity,
                    line,
                    column,
                    message,
                }
            })
            .collect()
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(source: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The field names a `#[derive(Deserialize)]` struct accepts, read from
/// serde itself, so unknown keys can all be reported before deserializing.
pub fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(&'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// The known name closest to `name`, if it is a plausible typo.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let s = "a = 1\nbé = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 9), (2, 3));
        assert_eq!(line_col(s, 8), (2, 2)); // inside `é`
        assert_eq!(line_col(s, 999), (3, 1));
    }

    #[test]
    fn introspection_and_typos() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            alpha: u8,
            beta_gamma: Option<String>,
        }
        assert_eq!(fields_of::<S>(), &["alpha", "beta_gamma"]);
        assert_eq!(
            closest("beta_gama", &["alpha", "beta_gamma"]),
            Some("beta_gamma")
        );
        assert_eq!(closest("zzz", &["alpha", "beta_gamma"]), None);
    }
}
