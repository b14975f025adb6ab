//! Error location: a light scan of a scenario's text that records where every field and list
//! element is written (its path, `clients.keys`, `faults[2].at`, and its byte span), so that an
//! error names the line, column and field. It knows RON's strings, comments and brackets but not
//! its types, and never fails, so it also works on text that `ron` refuses. It never judges a
//! value.

use super::ScenarioError;

/// Where one field or list element is written: `path` as error messages name it
/// (`clients.keys`, `faults[2].at`), from the start of its name (or of the element) to just past
/// its value, as byte offsets.
#[derive(Debug)]
pub(super) struct Span {
    pub(super) path: String,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Field positions in a scenario's text, found by a light scan that knows RON's strings,
/// comments and brackets but not its types; it never fails, so it also works on text that
/// `ron` refuses.
pub(super) struct Locator<'t> {
    pub(super) file: &'t str,
    pub(super) text: &'t str,
    spans: Vec<Span>,
}

impl<'t> Locator<'t> {
    pub(super) fn new(file: &'t str, text: &'t str) -> Locator<'t> {
        let mut scan = Scanner {
            b: text.as_bytes(),
            i: 0,
            spans: Vec::new(),
        };
        scan.document();
        Locator {
            file,
            text,
            spans: scan.spans,
        }
    }

    /// The first span written for `path`, or else for its nearest written ancestor.
    pub(super) fn span(&self, path: &str) -> Option<&Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.iter().find(|s| s.path == p) {
                return Some(s);
            }
            p = parent(p)?;
        }
    }

    /// Where `path` (or its nearest written ancestor) starts; the top of the file if nowhere.
    pub(super) fn at(&self, path: &str) -> usize {
        self.span(path).map_or(0, |s| s.start)
    }

    /// The smallest span holding the byte offset `off`. Ends are exclusive: ron reports a
    /// struct's missing field at its closing `)`, which is where its last value ends.
    pub(super) fn innermost(&self, off: usize) -> Option<&Span> {
        self.spans
            .iter()
            .filter(|s| s.start <= off && off < s.end)
            .min_by_key(|s| s.end - s.start)
    }

    /// The byte offset of ron's 1-based (line, column in characters).
    pub(super) fn offset(&self, line: usize, col: usize) -> usize {
        let line_start: usize = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let rest = self.text.get(line_start..).unwrap_or("");
        line_start
            + rest
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i)
    }

    /// The 1-based (line, column in characters) of a byte offset.
    pub(super) fn line_col(&self, off: usize) -> (usize, usize) {
        let before = self.text.get(..off).unwrap_or(self.text);
        let line = 1 + before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, 1 + before[line_start..].chars().count())
    }

    pub(super) fn error_at(
        &self,
        off: usize,
        field: Option<String>,
        message: String,
    ) -> ScenarioError {
        let (line, column) = self.line_col(off);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            field,
            message,
        }
    }

    /// An error in the field at `path`, placed where that field is written.
    pub(super) fn error(&self, path: &str, message: String) -> ScenarioError {
        self.error_at(self.at(path), Some(path.to_string()), message)
    }
}

/// `faults[1].at` → `faults[1]` → `faults` → `` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

pub(super) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Nesting deeper than this is scanned flat (no recursion), so hostile input cannot overflow the
/// stack; real scenarios nest four levels.
const MAX_DEPTH: usize = 32;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    spans: Vec<Span>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn peek2(&self) -> Option<u8> {
        self.b.get(self.i + 1).copied()
    }

    /// Skips whitespace, `// line` and (nested) `/* block */` comments.
    fn trivia(&mut self) {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_ascii_whitespace() => self.i += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    self.i += 2;
                    let mut depth = 1;
                    while depth > 0 && self.i < self.b.len() {
                        match (self.peek(), self.peek2()) {
                            (Some(b'/'), Some(b'*')) => (depth, self.i) = (depth + 1, self.i + 2),
                            (Some(b'*'), Some(b'/')) => (depth, self.i) = (depth - 1, self.i + 2),
                            _ => self.i += 1,
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn document(&mut self) {
        self.trivia();
        // `#![enable(...)]` extension attributes.
        while self.peek() == Some(b'#') {
            while let Some(c) = self.peek() {
                self.i += 1;
                if c == b']' {
                    break;
                }
            }
            self.trivia();
        }
        self.value("", 0);
    }

    /// Scans one value; consumes at least one byte unless at the end of the text.
    fn value(&mut self, path: &str, depth: usize) {
        self.trivia();
        let Some(c) = self.peek() else { return };
        if depth > MAX_DEPTH {
            self.i += 1;
            return;
        }
        match c {
            b'"' => self.string(),
            b'r' if matches!(self.peek2(), Some(b'"' | b'#')) => self.raw_string(),
            b'(' => self.group(path, depth),
            b'[' => self.list(path, depth),
            b'{' => self.map(path, depth),
            c if is_atom(c) => {
                while self.peek().is_some_and(is_atom) {
                    self.i += 1;
                }
                // `Name(...)`: a named struct, tuple struct or enum variant.
                let save = self.i;
                self.trivia();
                if self.peek() == Some(b'(') {
                    self.group(path, depth);
                } else {
                    self.i = save;
                }
            }
            _ => self.i += 1,
        }
    }

    fn string(&mut self) {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return,
                _ => {}
            }
        }
    }

    fn raw_string(&mut self) {
        self.i += 1;
        let mut hashes = 0;
        while self.peek() == Some(b'#') {
            (hashes, self.i) = (hashes + 1, self.i + 1);
        }
        self.i += 1; // the opening quote
        while self.i < self.b.len() {
            let c = self.b[self.i];
            self.i += 1;
            if c == b'"'
                && self.b.len() >= self.i + hashes
                && self.b[self.i..self.i + hashes].iter().all(|&h| h == b'#')
            {
                self.i += hashes;
                return;
            }
        }
    }

    /// `ident :` (not `::`) at the cursor: consumes it and returns the name.
    fn field_name(&mut self) -> Option<String> {
        let start = self.i;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            return None;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        let name = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        self.trivia();
        if self.peek() == Some(b':') && self.peek2() != Some(b':') {
            self.i += 1;
            Some(name)
        } else {
            self.i = start;
            None
        }
    }

    /// The items of a `( ... )` or `[ ... ]` opened at the current byte, up to `close`: `item`
    /// scans one, at its first byte, with its position in the sequence.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self, usize)) {
        self.i += 1;
        let mut index = 0;
        loop {
            self.trivia();
            match self.peek() {
                None => return,
                Some(b) if b == close => {
                    self.i += 1;
                    return;
                }
                Some(b',') => {
                    self.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            item(self, index);
            index += 1;
        }
    }

    /// Scans a value at `path` and records where it stood.
    fn spanned_value(&mut self, path: String, depth: usize, start: usize) {
        self.value(&path, depth);
        self.spans.push(Span {
            path,
            start,
            end: self.i,
        });
    }

    /// `( ... )`: named fields get their own path; unnamed elements (a tuple variant's
    /// contents) belong to the enclosing one.
    fn group(&mut self, path: &str, depth: usize) {
        self.items(b')', |s, _| {
            let start = s.i;
            match s.field_name() {
                Some(name) => s.spanned_value(join(path, &name), depth + 1, start),
                None => s.value(path, depth + 1),
            }
        });
    }

    /// `[ ... ]`: element `i` is `path[i]`.
    fn list(&mut self, path: &str, depth: usize) {
        self.items(b']', |s, index| {
            let start = s.i;
            s.spanned_value(format!("{path}[{index}]"), depth + 1, start);
        });
    }

    /// `{ key: value, ... }`: scanned for brackets only (scenarios have no maps).
    fn map(&mut self, path: &str, depth: usize) {
        self.i += 1;
        loop {
            self.trivia();
            match self.peek() {
                None => return,
                Some(b'}') => {
                    self.i += 1;
                    return;
                }
                Some(b',' | b':') => self.i += 1,
                Some(_) => self.value(path, depth + 1),
            }
        }
    }
}

/// Bytes of identifiers, numbers and other bare words.
fn is_atom(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-' | b'\'') || c >= 0x80
}
