//! The recipients export as CSV, the same in every front-end: one set of columns, and cells a
//! spreadsheet would run as a formula neutralised.

use std::collections::HashMap;

use broadcast_domain::{Recipient, UserId};

/// The columns of the export, in order (JSON lines exports carry the same names).
pub const COLUMNS: [&str; 17] = [
    "id",
    "broadcast_id",
    "user_id",
    "name",
    "registration_id",
    "channel",
    "address",
    "status",
    "skip_reason",
    "attempts",
    "error_kind",
    "last_error",
    "provider_message_id",
    "sent_at",
    "next_attempt_at",
    "uncertain_sends",
    "updated_at",
];

/// Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`; numbers such as a group's chat id `-100123` stay as
/// they are.
pub fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// One ledger row as the cells of [`COLUMNS`], with its user's name, free text neutralised
/// with [`cell`].
pub fn record(r: &Recipient, name: &str) -> [String; 17] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    [
        r.id.to_string(),
        r.broadcast_id.to_string(),
        r.user_id.to_string(),
        cell(name),
        opt(r.registration_id.map(|v| v.to_string())),
        r.channel.to_string(),
        cell(&r.address),
        r.status.to_string(),
        opt(r.skip_reason.map(|v| v.to_string())),
        r.attempts.to_string(),
        opt(r.error_kind.map(|v| v.to_string())),
        cell(r.last_error.as_deref().unwrap_or_default()),
        cell(r.provider_message_id.as_deref().unwrap_or_default()),
        opt(r.sent_at.map(|v| v.to_rfc3339())),
        r.next_attempt_at.to_rfc3339(),
        r.uncertain_sends.to_string(),
        r.updated_at.to_rfc3339(),
    ]
}

/// Writes `rows` with their users' names (after the header row when `header`) to `w`.
pub fn write_csv<W: std::io::Write>(
    w: &mut csv::Writer<W>,
    rows: &[Recipient],
    names: &HashMap<UserId, String>,
    header: bool,
) -> csv::Result<()> {
    if header {
        w.write_record(COLUMNS)?;
    }
    for r in rows {
        let name = names.get(&r.user_id).map_or("", String::as_str);
        w.write_record(record(r, name))?;
    }
    Ok(())
}

/// `rows` with their users' names as one CSV chunk (with the header row first when
/// `header`), for streaming.
pub fn csv_chunk(
    rows: &[Recipient],
    names: &HashMap<UserId, String>,
    header: bool,
) -> csv::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_csv(&mut w, rows, names, header)?;
    w.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_become_formulas() {
        for (text, expected) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("-100123", "-100123"),
            ("+49", "+49"),
            ("ann@example.org", "ann@example.org"),
            ("", ""),
        ] {
            assert_eq!(cell(text), expected, "{text:?}");
        }
    }

    #[test]
    fn a_record_has_every_column_and_neutralises_free_text() {
        use broadcast_domain::{ChannelKind, DeliveryStatus, ErrorKind};
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc();
        let row = Recipient {
            id: 9,
            broadcast_id: 2,
            user_id: 5,
            registration_id: None,
            channel: ChannelKind::EMAIL,
            address: "=cmd@example.org".to_owned(),
            status: DeliveryStatus::Failed,
            skip_reason: None,
            attempts: 3,
            next_attempt_at: at,
            lease_owner: Some("w1".to_owned()),
            lease_expires_at: None,
            send_started_at: None,
            error_kind: Some(ErrorKind::Permanent),
            last_error: Some("@SUM(1)".to_owned()),
            provider_message_id: Some("-x".to_owned()),
            sent_at: None,
            uncertain_sends: 1,
            updated_at: at,
        };
        let names = HashMap::from([(5, "=Ann Smith".to_owned())]);
        let chunk = String::from_utf8(csv_chunk(&[row], &names, true).unwrap()).unwrap();
        let mut lines = chunk.lines();
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "9,2,5,'=Ann Smith,,email,'=cmd@example.org,failed,,3,permanent,'@SUM(1),'-x,,\
             2026-12-03T10:00:00+00:00,1,2026-12-03T10:00:00+00:00"
        );
    }
}
