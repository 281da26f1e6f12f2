//! Diagnostics that point at a place in a file.
//!
//! Every configuration problem is reported as `file:line:column: message`, the
//! form editors and CI annotators understand, and the validation pass collects
//! all of them before failing so a user fixes a file in one round trip.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a configuration or job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the file as a whole.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// The text of one file, kept so byte offsets can be turned into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// The text of the file at `path`, already read.
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_path_buf(),
            text,
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// A problem at a byte range of this file (the start is what is shown).
    pub fn at(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with the file as a whole (no line to point at).
    pub fn whole(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.clone(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

/// Turn a TOML parse or type error into a diagnostic at the place it names.
pub fn from_toml_error(file: &SourceFile, err: &toml::de::Error) -> Diagnostic {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => file.at(span, message),
        None => file.whole(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_char_columns() {
        let f = SourceFile::new(Path::new("x.toml"), "a = 1\nbé = 2\n".to_string());
        assert_eq!(f.position(0), (1, 1));
        assert_eq!(f.position(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(f.position(9), (2, 3));
    }
}
