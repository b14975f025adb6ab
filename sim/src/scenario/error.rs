//! The error a scenario file that cannot be run is refused with, naming the file, line, column
//! and field, and the translation of `ron`'s own errors into it (the field found by
//! [`super::locate`]). Nothing here reads a file or checks a value.

use std::fmt;

use super::locate::{join, Locator};

/// A scenario file that cannot be run, with where and why. Displays as
/// ``{file}:{line}:{column}: field `{field}`: {message}``, or without the field part when the
/// error is not in one field. Line and column are 1-based (column in characters); both are 0
/// when the file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file as given to [`Scenario::load`](super::Scenario::load) or [`Scenario::parse`](super::Scenario::parse).
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field's path: `nodes`, `network.latency`, `faults[2].fault`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Turns ron's error into ours. The position is ron's; the field is the path of the innermost
/// field or list element the position falls in (joined with the field ron names, if any).
pub(super) fn ron_error(loc: &Locator<'_>, e: ron::error::SpannedError) -> ScenarioError {
    let (line, column) = (e.span.start.line.max(1), e.span.start.col.max(1));
    let off = loc.offset(line, column);
    let here = loc.innermost(off).map(|s| s.path.as_str());
    let field = match &e.code {
        ron::Error::NoSuchStructField { found, .. } => Some(named_field(here, found)),
        ron::Error::DuplicateStructField { field, .. } => Some(named_field(here, field)),
        // ron points at the end of the struct that lacks the field.
        ron::Error::MissingStructField { field, .. } => Some(join(here.unwrap_or(""), field)),
        _ => here.map(str::to_string),
    };
    let message = match &e.code {
        ron::Error::NoSuchStructField {
            expected, found, ..
        } => format!(
            "unknown field `{found}`; expected one of: {}",
            expected.join(", ")
        ),
        ron::Error::MissingStructField { field, .. } => format!("missing field `{field}`"),
        other => other.to_string(),
    };
    ScenarioError {
        file: loc.file.to_string(),
        line,
        column,
        field,
        message,
    }
}

/// The path of field `name`, which ron reported at a position inside `here`: ron points at the
/// name itself (which the scan recorded) or into the struct that holds it.
fn named_field(here: Option<&str>, name: &str) -> String {
    match here {
        Some(p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        p => join(p.unwrap_or(""), name),
    }
}
