//! Diagnostics about an app.toml: where (`file:line:col`), which key, what is wrong, what to do.
//!
//! Errors and warnings travel together: a file with only warnings is still generated, and every
//! problem in a file is reported at once rather than one per run.

use std::fmt;
use std::ops::Range;

/// How bad a diagnostic is. Warnings never change the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The key is accepted but discouraged or has no effect.
    Warning,
    /// Nothing is generated from this file.
    Error,
}

/// One problem in one file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// The offending key, as a dotted path (`env.PORT`, `listen[1]`), if any.
    pub key: Option<String>,
    /// What is wrong and what to do, lowercase, user values in backticks.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}:{}: {severity}: ", self.file, self.line, self.col)?;
        if let Some(key) = &self.key {
            write!(f, "`{key}` ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every diagnostic of one file; an `Err` carries at least one error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl crate::Classify for Diagnostics {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Invalid
    }
}

/// Turns byte spans of one source text into diagnostics with line and column.
pub(crate) struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
    pub(crate) found: Vec<Diagnostic>,
    marked: Vec<(String, usize, usize)>,
}

/// Where the keys that name things on the machine (`command`, `user`, `group`, `listen[i]`)
/// are in the file: checks after parsing (is the program installed? is the port free?) report
/// at the key's position like parsing does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    file: String,
    keys: Vec<(String, usize, usize)>,
}

impl Places {
    /// A diagnostic at `key` (at the top of the file if the key was not marked).
    pub fn diagnostic(&self, severity: Severity, key: &str, message: String) -> Diagnostic {
        let (line, col) = self
            .keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or((1, 1), |&(_, line, col)| (line, col));
        Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            col,
            key: Some(key.to_string()),
            message,
        }
    }
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            found: Vec::new(),
            marked: Vec::new(),
        }
    }

    /// Remembers where `key`'s value is, for checks made after parsing ([`Places`]).
    pub(crate) fn mark(&mut self, key: &str, span: Range<usize>) {
        let (line, col) = self.position(span.start);
        self.marked.push((key.to_string(), line, col));
    }

    /// The marked keys.
    pub(crate) fn places(&self) -> Places {
        Places {
            file: self.file.to_string(),
            keys: self.marked.clone(),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        key: Option<&str>,
        message: String,
    ) {
        let (line, col) = self.position(span.start);
        self.found.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line,
            col,
            key: key.map(str::to_string),
            message,
        });
    }

    pub(crate) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, Some(key), message.into());
    }

    pub(crate) fn warning(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, span, Some(key), message.into());
    }

    pub(crate) fn finish(self) -> Diagnostics {
        let mut found = self.found;
        found.sort_by_key(|d| (d.line, d.col));
        Diagnostics(found)
    }
}
