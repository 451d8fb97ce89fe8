//! The filter builder: form fields (pick lists and yes/no/any selects) to an
//! [`AudienceFilter`], and the choices the form offers.

use broadcast_domain::{AudienceFilter, ChannelPolicy, CompetitionId, RegistrationStatus, Role};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// The audience part of the broadcast form (also the query of the live count).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct FilterFields {
    #[serde(default)]
    pub(crate) competition_ids: Vec<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) registration_statuses: Vec<String>,
    #[serde(default)]
    pub(crate) countries: Vec<String>,
    #[serde(default)]
    pub(crate) cities: Vec<String>,
    /// `""` (any), `yes` or `no`.
    #[serde(default)]
    pub(crate) has_email: String,
    /// `""` (any), `yes` or `no`.
    #[serde(default)]
    pub(crate) has_telegram: String,
    /// Channel policy, for the message counts.
    #[serde(default)]
    pub(crate) channel_policy: String,
}

fn tristate(field: &str, value: &str) -> Result<Option<bool>, String> {
    match value.trim() {
        "" | "any" => Ok(None),
        "yes" | "true" => Ok(Some(true)),
        "no" | "false" => Ok(Some(false)),
        other => Err(format!("`{field}` must be yes, no or empty, not `{other}`")),
    }
}

fn nonblank(values: &[String]) -> impl Iterator<Item = &str> {
    values.iter().map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl FilterFields {
    /// The filter these fields describe; the error names the field.
    pub(crate) fn filter(&self) -> Result<AudienceFilter, String> {
        let competition_ids = nonblank(&self.competition_ids)
            .map(|v| {
                v.parse::<CompetitionId>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| format!("competition `{v}` is not a competition id"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let roles = nonblank(&self.roles)
            .map(|v| v.parse::<Role>().map_err(|e| e.0))
            .collect::<Result<Vec<_>, _>>()?;
        let registration_statuses = nonblank(&self.registration_statuses)
            .map(|v| v.parse::<RegistrationStatus>().map_err(|e| e.0))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = AudienceFilter {
            competition_ids,
            roles,
            registration_statuses,
            countries: nonblank(&self.countries).map(str::to_owned).collect(),
            cities: nonblank(&self.cities).map(str::to_owned).collect(),
            has_email: tristate("has_email", &self.has_email)?,
            has_telegram: tristate("has_telegram", &self.has_telegram)?,
            ..AudienceFilter::default()
        };
        filter.validate().map_err(|e| e.to_string())?;
        Ok(filter.normalised())
    }

    /// The channel policy (default: both channels).
    pub(crate) fn policy(&self) -> Result<ChannelPolicy, String> {
        if self.channel_policy.trim().is_empty() {
            Ok(ChannelPolicy::BOTH)
        } else {
            self.channel_policy
                .parse()
                .map_err(|e: broadcast_domain::ParseError| e.0)
        }
    }

    /// The fields that show `filter` (for a form filled from a stored broadcast).
    pub(crate) fn from_filter(filter: &AudienceFilter, policy: ChannelPolicy) -> Self {
        let tri = |b: Option<bool>| match b {
            None => String::new(),
            Some(true) => "yes".to_owned(),
            Some(false) => "no".to_owned(),
        };
        Self {
            competition_ids: filter
                .competition_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            roles: filter.roles.iter().map(ToString::to_string).collect(),
            registration_statuses: filter
                .registration_statuses
                .iter()
                .map(ToString::to_string)
                .collect(),
            countries: filter.countries.clone(),
            cities: filter.cities.clone(),
            has_email: tri(filter.has_email),
            has_telegram: tri(filter.has_telegram),
            channel_policy: policy.to_string(),
        }
    }
}

/// Parses the time of a `datetime-local` input (taken as UTC) or an RFC 3339 time.
pub(crate) fn parse_schedule(raw: &str) -> Result<Option<DateTime<Utc>>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(format!(
        "`{raw}` is not a date and time; use YYYY-MM-DDTHH:MM (UTC)"
    ))
}

/// The value of a `datetime-local` input for a time.
pub(crate) fn schedule_value(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

/// An option of a pick list.
#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) selected: bool,
}

/// Choices from `values`, marking the selected ones; selected values missing from `values`
/// are added so that the form never drops what the user chose.
pub(crate) fn choices(values: &[String], selected: &[String]) -> Vec<Choice> {
    let lower: Vec<String> = selected.iter().map(|s| s.trim().to_lowercase()).collect();
    let mut out: Vec<Choice> = values
        .iter()
        .map(|v| Choice {
            value: v.clone(),
            label: v.clone(),
            selected: lower.contains(&v.to_lowercase()),
        })
        .collect();
    for s in selected {
        let s = s.trim();
        if !s.is_empty() && !values.iter().any(|v| v.to_lowercase() == s.to_lowercase()) {
            out.push(Choice {
                value: s.to_owned(),
                label: s.to_owned(),
                selected: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &str) -> FilterFields {
        serde_html_form::from_str(pairs).unwrap()
    }

    #[test]
    fn builds_filters_from_repeated_fields() {
        let f = fields(
            "competition_ids=2&competition_ids=1&roles=judge&roles=mentor&countries=Germany\
             &has_email=yes&has_telegram=&cities=&channel_policy=email",
        );
        let filter = f.filter().unwrap();
        assert_eq!(filter.competition_ids, vec![1, 2]);
        assert_eq!(filter.roles, vec![Role::Judge, Role::Mentor]);
        assert_eq!(filter.countries, vec!["Germany".to_owned()]);
        assert!(filter.cities.is_empty());
        assert_eq!((filter.has_email, filter.has_telegram), (Some(true), None));
        assert_eq!(f.policy().unwrap(), ChannelPolicy::EMAIL);
        let back = FilterFields::from_filter(&filter, ChannelPolicy::EMAIL);
        assert_eq!(back.filter().unwrap(), filter);
        assert_eq!(fields("").filter().unwrap(), AudienceFilter::default());
    }

    #[test]
    fn bad_fields_are_named() {
        for (query, expected) in [
            ("competition_ids=x", "competition `x`"),
            ("roles=jduge", "unknown role `jduge`"),
            ("registration_statuses=done", "unknown registration status"),
            ("has_email=maybe", "`has_email`"),
            ("competition_ids=-3", "competition `-3`"),
        ] {
            let err = fields(query).filter().unwrap_err();
            assert!(err.contains(expected), "{query}: {err}");
        }
        assert!(fields("channel_policy=carrier-pigeon").policy().is_err());
    }

    #[test]
    fn schedules_parse_as_utc() {
        let t = parse_schedule("2027-03-01T09:30").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2027-03-01T09:30:00+00:00");
        assert_eq!(schedule_value(Some(t)), "2027-03-01T09:30");
        assert_eq!(
            parse_schedule("2027-03-01T10:30:00+01:00").unwrap(),
            Some(t)
        );
        assert_eq!(parse_schedule(" ").unwrap(), None);
        assert!(parse_schedule("tomorrow").unwrap_err().contains("tomorrow"));
    }

    #[test]
    fn choices_keep_selected_values() {
        let c = choices(
            &["Berlin".to_owned(), "Kraków".to_owned()],
            &["berlin".to_owned(), "Paris".to_owned()],
        );
        let picked: Vec<_> = c
            .iter()
            .filter(|c| c.selected)
            .map(|c| c.value.as_str())
            .collect();
        assert_eq!(picked, vec!["Berlin", "Paris"]);
    }
}
