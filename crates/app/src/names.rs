//! Names shown beside ids, in both front-ends: users in the recipients page and exports,
//! competitions in filter summaries.

use std::collections::{BTreeMap, HashMap};

use broadcast_domain::{AudienceStore, CompetitionId, Recipient, Result, UserId};

/// The names of the users of `rows` (first and last name): one batch lookup per page of rows.
pub async fn user_names(
    audience: &dyn AudienceStore,
    rows: &[Recipient],
) -> Result<HashMap<UserId, String>> {
    Ok(audience
        .contexts(rows)
        .await?
        .into_iter()
        .map(|c| (c.user.id, c.user.full_name()))
        .collect())
}

/// Every competition's name by id, for `AudienceFilter::describe_with` (one small query).
pub async fn competition_names(
    audience: &dyn AudienceStore,
) -> Result<BTreeMap<CompetitionId, String>> {
    Ok(audience
        .list_competitions()
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}
