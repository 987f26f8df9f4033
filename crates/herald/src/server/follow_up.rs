//! Follow-up campaigns: a new campaign whose recipients are picked from another campaign's
//! outcomes, without a CSV. The new message's placeholders are filled from the values each
//! recipient had in the first campaign, by column name.
//!
//! Never picked, whatever the audience: a recipient who failed for good (an error of the
//! recipient-permanent class, 131026 and the like), one whose outcome is in doubt (the first
//! message may well have arrived), and one on the number's suppression list (opted out).

use std::collections::HashMap;

use herald_cloudapi::ErrorClass;
use herald_core::{CampaignAction, Progress, Recipient, SkipReason, Vars};
use herald_store::{Campaign, JobState, NewCampaign, RecipientOutcome, Store};
use serde::{Deserialize, Serialize};

use crate::server::api::ApiError;

/// Whom a follow-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Failed, when sent or by Meta's status after it accepted the message, with an error
    /// that was not about the recipient (a Meta outage, a throughput or pair limit, a
    /// template or account problem since fixed).
    FailedRetryable,
    /// Declined by Meta for the user's marketing limit (131049), when sent or by status.
    FrequencyCapped,
    /// Accepted by Meta, neither delivered nor failed `not_delivered_after_hours` later.
    NotDelivered,
    /// Delivered but not read.
    NotRead,
    /// Wrote back after the first campaign messaged them.
    Replied,
}

/// `POST /v1/campaigns/{id}/follow-up`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpBody {
    pub audience: Audience,
    /// For `not_delivered`: how long after Meta accepted it a message counts as not
    /// delivered (default 24).
    #[serde(default)]
    pub not_delivered_after_hours: Option<u32>,
    /// The new campaign, as for `POST /v1/campaigns` (its `phone_number_id` defaults to the
    /// first campaign's). Its placeholders must name columns of the first campaign's CSV.
    #[schema(value_type = herald_core::CampaignSpec)]
    pub campaign: Box<serde_json::value::RawValue>,
}

/// What a follow-up picked.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Picked {
    /// Recipients of the first campaign that were looked at.
    pub looked_at: u64,
    /// Added to the new campaign.
    pub added: u64,
    /// In the audience but on the suppression list now (opted out since).
    pub suppressed: u64,
    /// In the audience, but a value the new message needs is empty or breaks the field's
    /// rule (a 5,000-character name, an `http://` link).
    pub unusable_values: u64,
}

impl Audience {
    fn picks(self, o: &RecipientOutcome, now_ms: i64, after_hours: u32) -> bool {
        // A failure at send, or Meta's failed status after accepting it.
        let failed = match &o.state {
            JobState::Failed { code } => Some(code.as_str()),
            JobState::Accepted { delivery, .. } if delivery.failed => o.webhook_error.as_deref(),
            _ => None,
        };
        let code = failed.and_then(|c| c.parse::<i64>().ok());
        match (&o.state, self) {
            (_, Self::FailedRetryable) => code.is_some_and(|c| {
                SkipReason::declined_by(&c.to_string()).is_none()
                    && ErrorClass::of_code(c) != Some(ErrorClass::RecipientPermanent)
            }),
            (JobState::Skipped { reason }, Self::FrequencyCapped) => {
                *reason == SkipReason::FrequencyCapped
            }
            (JobState::Accepted { .. }, Self::FrequencyCapped) => code == Some(131_049),
            (JobState::Accepted { delivery, .. }, Self::NotDelivered) => {
                let waited = i64::from(after_hours) * 3_600_000;
                !delivery.failed
                    && delivery.progress < Progress::Delivered
                    && o.accepted_ms.is_some_and(|at| now_ms - at >= waited)
            }
            (JobState::Accepted { delivery, .. }, Self::NotRead) => {
                !delivery.failed && delivery.progress == Progress::Delivered
            }
            (JobState::InDoubt | JobState::Failed { .. }, Self::Replied) => false,
            (_, Self::Replied) => o.replied,
            _ => false,
        }
    }
}

/// How the new message's placeholders are filled from the first campaign's values.
pub(crate) struct Columns(Vec<usize>);

impl Columns {
    /// The index of each of `new`'s placeholders among `source`'s; an error names a
    /// placeholder the first campaign's rows do not have.
    pub(crate) fn map(
        source: &Campaign,
        new: &herald_core::MessageTemplate,
    ) -> Result<Self, ApiError> {
        let had = source
            .spec
            .compile()
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let index: HashMap<&str, usize> = (had.placeholders().iter().enumerate())
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut out = Vec::new();
        for p in new.placeholders() {
            let Some(i) = index.get(p.name.as_str()) else {
                let mut known: Vec<&str> = index.keys().copied().collect();
                known.sort_unstable();
                return Err(ApiError::invalid(format!(
                    "campaign.message: {{{{{}}}}} is not a column of campaign {}'s recipients \
                     (they have: {})",
                    p.name,
                    source.id,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            out.push(*i);
        }
        Ok(Self(out))
    }

    fn vars(&self, from: &Vars) -> Vars {
        Vars::from_values(self.0.iter().map(|i| from.get(*i)))
    }
}

/// Picks the audience from `source`'s recipients, page by page, and adds them to `target`.
pub(crate) async fn fill<S: Store>(
    store: &S,
    source: &Campaign,
    body: &FollowUpBody,
    columns: &Columns,
    template: &herald_core::MessageTemplate,
    now: jiff::Timestamp,
    target: &mut Target,
) -> Result<Picked, ApiError> {
    const PAGE: usize = 1000;
    let now_ms = now.as_millisecond();
    let after = body.not_delivered_after_hours.unwrap_or(24);
    let mut picked = Picked::default();
    let mut cursor = Some(0);
    while let Some(at) = cursor {
        let (rows, next) = store.outcomes(&source.id, at, PAGE).await?;
        cursor = next;
        picked.looked_at += rows.len() as u64;
        let chosen: Vec<&RecipientOutcome> = rows
            .iter()
            .filter(|o| body.audience.picks(o, now_ms, after))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let phones: Vec<_> = chosen.iter().map(|o| o.phone).collect();
        // The follow-up sends from the first campaign's number.
        let suppressed = store.suppressed(&source.phone_number_id, &phones).await?;
        let mut batch = Vec::with_capacity(chosen.len());
        for (o, off) in chosen.into_iter().zip(suppressed) {
            if off {
                picked.suppressed += 1;
                continue;
            }
            let vars = columns.vars(&o.vars);
            if crate::server::upload::row_check(template, &vars).is_err() {
                picked.unusable_values += 1;
                continue;
            }
            batch.push(Recipient::new(o.phone, vars).with_region(o.region));
        }
        if !batch.is_empty() {
            picked.added += target.add(store, &batch).await?;
        }
    }
    Ok(picked)
}

/// The follow-up campaign, made with its first recipients: an audience nobody is in makes
/// none (a draft with no recipient would be clutter; started, it would run until cancelled).
pub(crate) struct Target {
    new: Option<NewCampaign>,
    /// The campaign, once made.
    pub(crate) made: Option<Campaign>,
}

impl Target {
    pub(crate) fn new(new: NewCampaign) -> Self {
        Self {
            new: Some(new),
            made: None,
        }
    }

    /// Adds recipients, making the campaign first if they are its first; answers how many
    /// were added.
    async fn add<S: Store>(&mut self, store: &S, batch: &[Recipient]) -> Result<u64, ApiError> {
        if self.made.is_none()
            && let Some(new) = self.new.take()
        {
            self.made = Some(crate::server::api::stored(store, new).await?);
        }
        let Some(campaign) = &self.made else {
            return Ok(0);
        };
        let added = store.enqueue_batch(&campaign.id, batch).await?;
        Ok(added.iter().filter(|a| **a).count() as u64)
    }

    /// After a fill that failed: the campaign made for it holds part of the audience (or was
    /// not scheduled), so it is taken away, cancelled then deleted, and trying again makes
    /// one whole campaign. When that fails too (the store is down), the error names it.
    pub(crate) async fn abandon<S: Store>(self, store: &S, mut error: ApiError) -> ApiError {
        let Some(campaign) = self.made else {
            return error;
        };
        let gone = async {
            store
                .transition(&campaign.id, CampaignAction::Cancel, None)
                .await?;
            store.delete_campaign(&campaign.id).await
        }
        .await;
        match gone {
            Ok(_) => {
                tracing::warn!(campaign = %campaign.id, error = %error.message, "a follow-up failed while it was filled; the campaign made for it is deleted");
            }
            Err(e) => {
                error.message = format!(
                    "{}; campaign {} was made for the follow-up and holds part of its \
                     audience: cancel and delete it before trying again ({e})",
                    error.message, campaign.id
                );
            }
        }
        error
    }
}

impl Picked {
    /// The refusal of a follow-up that picked nobody.
    pub(crate) fn nobody(&self, source: &Campaign, audience: Audience) -> ApiError {
        let audience = serde_json::to_value(audience)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut left_out = Vec::new();
        if self.suppressed > 0 {
            left_out.push(format!("{} on the suppression list", self.suppressed));
        }
        if self.unusable_values > 0 {
            left_out.push(format!(
                "{} with values that do not fit the new message",
                self.unusable_values
            ));
        }
        let (n, id) = (self.looked_at, &source.id);
        let message = if left_out.is_empty() {
            format!(
                "none of the {n} recipients of campaign {id} is in the audience {audience}: no \
                 campaign was created"
            )
        } else {
            format!(
                "none of the {n} recipients of campaign {id} can be sent a follow-up for the \
                 audience {audience}: of those in it, {}; no campaign was created",
                left_out.join(", ")
            )
        };
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "no_recipients",
            message,
        )
    }
}
