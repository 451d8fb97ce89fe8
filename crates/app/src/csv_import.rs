//! Reading the audience CSV files (users, competitions, registrations) into the domain's import
//! rows, checking every cell before anything is stored.
//!
//! Common rules for the three files:
//! - UTF-8, comma-separated, a header row first; fields may be quoted (`"Smith, Jr."`);
//!   surrounding spaces of fields are trimmed; a byte-order mark is allowed.
//! - Columns are found by header name (case-insensitive), in any order. A column that is not
//!   listed for the file is rejected (naming it and the known columns), a missing required
//!   column too (listing every missing one); optional columns may be left out.
//! - An empty cell of an optional column means "no value".
//! - Every row is checked before anything is written, and every bad row is reported (up to
//!   [`MAX_REPORTED`] of them, then how many more), each as
//!   `users.csv line 7, column `email`: ...` where the line is the 1-based line of the file,
//!   counting the header as line 1. A problem with the header stops the reading at once.
//! - A key that appears twice in one file is an error naming both lines.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use broadcast_domain::{
    Attributes, EmailAddress, NewCompetition, NewRegistration, NewUser, RegistrationStatus, Role,
    TelegramChatId,
};
use chrono::NaiveDate;

/// A problem in an audience CSV file, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CsvError {
    /// The file, as named in messages (`users.csv` unless changed with [`CsvError::in_file`]).
    pub file: String,
    /// 1-based line of the file (the header is line 1), when the problem is in a row.
    pub line: Option<u64>,
    /// Header name of the column, when the problem is in one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl CsvError {
    fn new(
        file: &str,
        line: Option<u64>,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        CsvError {
            file: file.to_owned(),
            line,
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The same error naming `file` (e.g. the path the operator gave) instead of the default.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = file.into();
        self
    }

    fn describe(&self) -> String {
        let mut out = self.file.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(" line {line}"));
        }
        if let Some(column) = &self.column {
            out.push_str(&format!(", column `{column}`"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        out
    }
}

/// Most problems of one file that are listed; the rest are counted.
pub const MAX_REPORTED: usize = 100;

/// Every problem found in one audience CSV file, at least one, in the order of the file's
/// lines: what a parse reports instead of its rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CsvErrors {
    problems: Vec<CsvError>,
    /// Problems found beyond [`MAX_REPORTED`].
    omitted: usize,
}

impl CsvErrors {
    /// The problems, sorted by line (header problems first), at most [`MAX_REPORTED`].
    fn new(mut problems: Vec<CsvError>) -> Self {
        debug_assert!(!problems.is_empty(), "a CSV error has at least one problem");
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        let omitted = problems.len().saturating_sub(MAX_REPORTED);
        problems.truncate(MAX_REPORTED);
        CsvErrors { problems, omitted }
    }

    /// The problems listed, in line order.
    pub fn problems(&self) -> &[CsvError] {
        &self.problems
    }

    /// How many more problems were found than are listed.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.problems.len() + self.omitted
    }

    /// Never true: a `CsvErrors` has a problem.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same errors naming `file` instead of the default.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        let file = file.into();
        for p in &mut self.problems {
            p.file = file.clone();
        }
        self
    }

    /// One problem: its message; several: how many, then one per line.
    fn describe(&self) -> String {
        match self.problems.as_slice() {
            [only] if self.omitted == 0 => only.to_string(),
            all => {
                let file = all.first().map_or("the file", |p| p.file.as_str());
                let mut out = format!("{} problems in {file}, nothing was imported:", self.len());
                for p in all {
                    out.push_str("\n  ");
                    out.push_str(&p.to_string());
                }
                if self.omitted > 0 {
                    out.push_str(&format!("\n  ... and {} more", self.omitted));
                }
                out
            }
        }
    }
}

impl From<CsvError> for CsvErrors {
    fn from(e: CsvError) -> Self {
        CsvErrors::new(vec![e])
    }
}

impl From<CsvErrors> for broadcast_domain::Error {
    fn from(e: CsvErrors) -> Self {
        broadcast_domain::Error::Invalid(e.to_string())
    }
}

/// The rows, or every problem found.
fn finish<T>(rows: Vec<T>, problems: Vec<CsvError>) -> Result<Vec<T>, CsvErrors> {
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(CsvErrors::new(problems))
    }
}

/// The layout of one kind of file.
struct Layout {
    file: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

const USERS: Layout = Layout {
    file: "users.csv",
    required: &["external_id"],
    optional: &[
        "first_name",
        "last_name",
        "email",
        "telegram_chat_id",
        "username",
        "language",
        "country",
        "city",
        "attributes",
        "telegram_blocked",
        "email_unsubscribed",
    ],
};

const COMPETITIONS: Layout = Layout {
    file: "competitions.csv",
    required: &["slug", "name"],
    optional: &["starts_on", "city", "country"],
};

const REGISTRATIONS: Layout = Layout {
    file: "registrations.csv",
    required: &["user_external_id", "competition_slug", "role", "status"],
    optional: &[],
};

/// One data row with its cells found by column name.
struct Row<'a> {
    file: &'static str,
    line: u64,
    columns: &'a HashMap<String, usize>,
    record: csv::StringRecord,
}

impl Row<'_> {
    fn error(&self, column: &str, message: impl fmt::Display) -> CsvError {
        CsvError::new(
            self.file,
            Some(self.line),
            Some(column),
            message.to_string(),
        )
    }

    /// The trimmed cell, `None` when the column is absent or the cell empty.
    fn opt(&self, column: &str) -> Option<String> {
        let i = *self.columns.get(column)?;
        let cell = self.record.get(i)?.trim();
        (!cell.is_empty()).then(|| cell.to_owned())
    }

    fn required(&self, column: &str) -> Result<String, CsvError> {
        self.opt(column)
            .ok_or_else(|| self.error(column, "a value is required"))
    }

    fn text(&self, column: &str) -> String {
        self.opt(column).unwrap_or_default()
    }

    fn parse<T, E: fmt::Display>(
        &self,
        column: &str,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, CsvError> {
        self.opt(column)
            .map(|cell| f(&cell).map_err(|e| self.error(column, e)))
            .transpose()
    }

    fn flag(&self, column: &str) -> Result<bool, CsvError> {
        Ok(self
            .parse(column, |cell| match cell.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!(
                    "`{cell}` is not a yes/no value; use true/false, 1/0, yes/no or leave it empty"
                )),
            })?
            .unwrap_or(false))
    }
}

/// Reads the header, checks it against the layout and hands every data row to `f`: the rows
/// `f` accepts, and a problem for each row it refuses or that cannot be read. A problem with the
/// header is the only error.
fn read_rows<T>(
    input: impl Read,
    layout: &Layout,
    mut f: impl FnMut(&Row<'_>) -> Result<T, CsvError>,
) -> Result<(Vec<T>, Vec<CsvError>), CsvError> {
    let file = layout.file;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| {
            CsvError::new(
                file,
                Some(1),
                None,
                format!("cannot read the header row: {e}"),
            )
        })?
        .clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(CsvError::new(
            file,
            Some(1),
            None,
            format!(
                "the header row is missing; the first line must name the columns, e.g. {}",
                layout.required.join(",")
            ),
        ));
    }
    let known: Vec<&str> = layout
        .required
        .iter()
        .chain(layout.optional)
        .copied()
        .collect();
    let mut columns = HashMap::new();
    for (i, raw) in headers.iter().enumerate() {
        let name = raw
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        if !known.contains(&name.as_str()) {
            return Err(CsvError::new(
                file,
                Some(1),
                None,
                format!(
                    "unknown column `{raw}`; known columns: {}",
                    known.join(", ")
                ),
            ));
        }
        if columns.insert(name, i).is_some() {
            return Err(CsvError::new(
                file,
                Some(1),
                None,
                format!("column `{raw}` appears twice in the header"),
            ));
        }
    }
    let missing: Vec<&str> = layout
        .required
        .iter()
        .copied()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(CsvError::new(
            file,
            Some(1),
            None,
            format!("missing required column(s): {}", missing.join(", ")),
        ));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map(csv::Position::line);
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("the row has {len} field(s) but the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_owned(),
                    // Not a problem of one row (the input cannot be read): stop here.
                    _ => {
                        problems.push(CsvError::new(file, line, None, e.to_string()));
                        break;
                    }
                };
                problems.push(CsvError::new(file, line, None, message));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        match f(&Row {
            file,
            line,
            columns: &columns,
            record,
        }) {
            Ok(row) => out.push(row),
            Err(problem) => problems.push(problem),
        }
    }
    Ok((out, problems))
}

/// A problem for every line carrying a key an earlier line carries.
fn repeats<T, K: std::hash::Hash + Eq>(
    file: &'static str,
    column: &str,
    rows: &[T],
    key: impl Fn(&T) -> (K, u64),
    describe: impl Fn(&T) -> String,
) -> Vec<CsvError> {
    let mut first: HashMap<K, u64> = HashMap::new();
    let mut problems = Vec::new();
    for row in rows {
        let (k, line) = key(row);
        match first.get(&k) {
            Some(earlier) => problems.push(CsvError::new(
                file,
                Some(line),
                Some(column),
                format!("{} is also on line {earlier}", describe(row)),
            )),
            None => {
                first.insert(k, line);
            }
        }
    }
    problems
}

/// Reads `users.csv`.
///
/// | column | required | content |
/// |---|---|---|
/// | `external_id` | yes | the platform's id of the user; the import updates the user with this id, or creates one |
/// | `first_name`, `last_name` | no | names (empty when absent) |
/// | `email` | no | an e-mail address (`ann@example.org`) |
/// | `telegram_chat_id` | no | the Telegram chat id, an integer other than 0 |
/// | `username` | no | Telegram user name; a leading `@` is dropped |
/// | `language` | no | preferred language, e.g. `de` |
/// | `country`, `city` | no | where the user lives |
/// | `attributes` | no | a JSON object, e.g. `{"shirt":"M"}`; templates can use its keys |
/// | `telegram_blocked` | no | `true`/`false`, `1`/`0`, `yes`/`no` or empty (= false): the user blocked the bot |
/// | `email_unsubscribed` | no | same values: the user unsubscribed from e-mail |
///
/// An `external_id` twice in the file is an error naming both lines.
pub fn parse_users(input: impl Read) -> Result<Vec<NewUser>, CsvErrors> {
    let (rows, mut problems) = read_rows(input, &USERS, |row| {
        let attributes = row
            .parse("attributes", |cell| {
                match serde_json::from_str::<serde_json::Value>(cell) {
                    Ok(serde_json::Value::Object(map)) => Ok::<Attributes, String>(map),
                    Ok(_) => Err(format!(
                        "`{cell}` is not a JSON object such as {{\"team\":\"red\"}}"
                    )),
                    Err(e) => Err(format!("`{cell}` is not valid JSON: {e}")),
                }
            })?
            .unwrap_or_default();
        Ok(NewUser {
            line: row.line,
            external_id: row.required("external_id")?,
            telegram_chat_id: row.parse("telegram_chat_id", TelegramChatId::parse)?,
            email: row.parse("email", EmailAddress::parse)?,
            first_name: row.text("first_name"),
            last_name: row.text("last_name"),
            username: row
                .opt("username")
                .map(|u| u.trim_start_matches('@').to_owned())
                .filter(|u| !u.is_empty()),
            language: row.opt("language"),
            country: row.opt("country"),
            city: row.opt("city"),
            attributes,
            telegram_blocked: row.flag("telegram_blocked")?,
            email_unsubscribed: row.flag("email_unsubscribed")?,
        })
    })?;
    problems.extend(repeats(
        USERS.file,
        "external_id",
        &rows,
        |u| (u.external_id.clone(), u.line),
        |u| format!("`{}`", u.external_id),
    ));
    finish(rows, problems)
}

/// Reads `competitions.csv`.
///
/// | column | required | content |
/// |---|---|---|
/// | `slug` | yes | short unique key without spaces, e.g. `berlin-open-2026`; the import updates the competition with this slug, or creates one |
/// | `name` | yes | display name |
/// | `starts_on` | no | first day, `YYYY-MM-DD` |
/// | `city`, `country` | no | where it happens |
///
/// A `slug` twice in the file is an error naming both lines.
pub fn parse_competitions(input: impl Read) -> Result<Vec<NewCompetition>, CsvErrors> {
    let (rows, mut problems) = read_rows(input, &COMPETITIONS, |row| {
        let slug = row.required("slug")?;
        if slug.chars().any(char::is_whitespace) {
            return Err(row.error("slug", format!("`{slug}` contains spaces; use e.g. `-`")));
        }
        Ok(NewCompetition {
            line: row.line,
            slug,
            name: row.required("name")?,
            starts_on: row.parse("starts_on", |cell| {
                NaiveDate::parse_from_str(cell, "%Y-%m-%d")
                    .map_err(|e| format!("`{cell}` is not a date in the form YYYY-MM-DD: {e}"))
            })?,
            city: row.opt("city"),
            country: row.opt("country"),
        })
    })?;
    problems.extend(repeats(
        COMPETITIONS.file,
        "slug",
        &rows,
        |c| (c.slug.clone(), c.line),
        |c| format!("`{}`", c.slug),
    ));
    finish(rows, problems)
}

/// Reads `registrations.csv`.
///
/// | column | required | content |
/// |---|---|---|
/// | `user_external_id` | yes | `external_id` of a user (imported before, or in the database) |
/// | `competition_slug` | yes | `slug` of a competition |
/// | `role` | yes | `participant`, `judge`, `mentor`, `organizer` or `volunteer` |
/// | `status` | yes | `pending`, `confirmed`, `waitlisted` or `cancelled` |
///
/// The import updates the registration of the same user to the same competition, or creates
/// one; the same pair twice in the file is an error naming both lines. Unknown users and
/// competitions are reported by the import (they depend on the database), naming the line.
pub fn parse_registrations(input: impl Read) -> Result<Vec<NewRegistration>, CsvErrors> {
    let (rows, mut problems) = read_rows(input, &REGISTRATIONS, |row| {
        Ok(NewRegistration {
            line: row.line,
            user_external_id: row.required("user_external_id")?,
            competition_slug: row.required("competition_slug")?,
            role: row
                .parse("role", str::parse::<Role>)?
                .ok_or_else(|| row.error("role", "a value is required"))?,
            status: row
                .parse("status", str::parse::<RegistrationStatus>)?
                .ok_or_else(|| row.error("status", "a value is required"))?,
        })
    })?;
    problems.extend(repeats(
        REGISTRATIONS.file,
        "competition_slug",
        &rows,
        |r| {
            (
                (r.user_external_id.clone(), r.competition_slug.clone()),
                r.line,
            )
        },
        |r| {
            format!(
                "the registration of user `{}` to `{}`",
                r.user_external_id, r.competition_slug
            )
        },
    ));
    finish(rows, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Result<Vec<NewUser>, CsvErrors> {
        parse_users(text.as_bytes())
    }

    #[test]
    fn reads_users_with_columns_in_any_order() {
        let rows = users(
            "\u{feff}email,External_ID,first_name,telegram_chat_id,attributes,telegram_blocked,username\n\
             Ann@Example.ORG,u1,Ann,42,\"{\"\"team\"\":\"\"red\"\"}\",yes,@ann\n\
             ,u2,Bob,,,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].email.as_ref().unwrap().as_ref(), "Ann@example.org");
        assert_eq!(rows[0].telegram_chat_id.unwrap().get(), 42);
        assert_eq!(rows[0].attributes["team"], "red");
        assert!(rows[0].telegram_blocked);
        assert_eq!(rows[0].username.as_deref(), Some("ann"));
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].email, None);
        assert!(!rows[1].telegram_blocked);
        assert!(rows[1].attributes.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                "external_id,email\nu1,a@x.org\nu2,bob@\n",
                "users.csv line 3, column `email`: `bob@` is not a valid e-mail address",
            ),
            (
                "external_id,telegram_chat_id\nu1,abc\n",
                "users.csv line 2, column `telegram_chat_id`: `abc` is not a valid Telegram chat id",
            ),
            (
                "external_id,attributes\nu1,[1]\n",
                "users.csv line 2, column `attributes`: `[1]` is not a JSON object",
            ),
            (
                "external_id,email_unsubscribed\nu1,maybe\n",
                "users.csv line 2, column `email_unsubscribed`: `maybe` is not a yes/no value",
            ),
            (
                "external_id,first_name\n,Ann\n",
                "users.csv line 2, column `external_id`: a value is required",
            ),
            (
                "external_id,nickname\nu1,x\n",
                "users.csv line 1: unknown column `nickname`; known columns: external_id,",
            ),
            (
                "first_name\nAnn\n",
                "users.csv line 1: missing required column(s): external_id",
            ),
            (
                "external_id,first_name\nu1,Ann\nu2\n",
                "users.csv line 3: the row has 1 field(s) but the header has 2",
            ),
            (
                "external_id\nu1\nu2\nu1\n",
                "users.csv line 4, column `external_id`: `u1` is also on line 2",
            ),
        ];
        for (text, expected) in cases {
            let err = users(text).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{text:?}\n got: {err}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn reads_competitions_and_registrations() {
        let comps = parse_competitions(
            "slug,name,starts_on,city\nberlin-26,Berlin Open,2026-05-01,Berlin\nx,X,,\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(comps[0].starts_on, NaiveDate::from_ymd_opt(2026, 5, 1));
        assert_eq!(comps[1].city, None);
        let err = parse_competitions("slug,name,starts_on\na,A,2026-13-01\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "competitions.csv line 2, column `starts_on`: `2026-13-01` is not a date"
            ),
            "{err}"
        );

        let regs = parse_registrations(
            "role,status,user_external_id,competition_slug\nJudge,confirmed,u1,berlin-26\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(regs[0].role, Role::Judge);
        let err = parse_registrations(
            "user_external_id,competition_slug,role,status\nu1,c,jduge,pending\n".as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "registrations.csv line 2, column `role`: unknown role `jduge`; expected one of: \
             participant, judge, mentor, organizer, volunteer"
        );
        let err = parse_registrations(
            "user_external_id,competition_slug,role,status\nu1,c,judge,pending\nu1,c,mentor,pending\n"
                .as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "registrations.csv line 3, column `competition_slug`: the registration of user `u1` to \
             `c` is also on line 2"
        );
    }

    #[test]
    fn every_bad_row_is_reported_in_line_order() {
        let err = users(
            "external_id,email,telegram_chat_id\n\
             u1,a@x.org,1\n\
             u2,bob@,2\n\
             u3,c@x.org,zero\n\
             u1,d@x.org,4\n\
             u5,e@x.org\n\
             u6,f@x.org,6\n",
        )
        .unwrap_err();
        let lines: Vec<Option<u64>> = err.problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(3), Some(4), Some(5), Some(6)], "{err}");
        assert_eq!(err.len(), 4);
        let text = err.to_string();
        assert!(
            text.starts_with("4 problems in users.csv, nothing was imported:\n  users.csv line 3, column `email`: `bob@`"),
            "{text}"
        );
        assert!(text.contains("line 4, column `telegram_chat_id`"), "{text}");
        assert!(
            text.contains("line 5, column `external_id`: `u1` is also on line 2"),
            "{text}"
        );
        assert!(text.contains("line 6: the row has 2 field(s)"), "{text}");

        // Beyond MAX_REPORTED the rest are counted.
        let mut many = String::from("external_id,email\n");
        for i in 0..MAX_REPORTED + 5 {
            many.push_str(&format!("u{i},bad{i}@\n"));
        }
        let err = users(&many).unwrap_err();
        assert_eq!((err.problems().len(), err.omitted()), (MAX_REPORTED, 5));
        assert!(err.to_string().ends_with("... and 5 more"), "{err}");
    }

    #[test]
    fn in_file_renames_the_file() {
        let err = users("first_name\nAnn\n")
            .unwrap_err()
            .in_file("data/members.csv");
        assert!(
            err.to_string().starts_with("data/members.csv line 1:"),
            "{err}"
        );
    }
}
