//! A campaign's place in its portfolio's messaging limit, as the API shows it (ARCHITECTURE
//! §13): the limit, its use over the moving 24 h, how many of the campaign's pending
//! recipients fit now, how many wait, when the next place frees and when all would fit.

use herald_core::{CampaignStatus, REACH_WINDOW};
use herald_sender::LimitConfig;
use herald_store::{Campaign, Result, Store};
use jiff::Timestamp;
use serde::Serialize;

/// The `messaging_limit` object of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitView {
    pub portfolio: String,
    /// Unique users per moving 24 h outside open windows; `None`: none enforced (unlimited,
    /// or not known and no cap configured).
    pub limit: Option<u64>,
    pub used: u64,
    pub available: u64,
    /// Pending recipients that fit in the budget now. An estimate from above for the
    /// waiting: recipients with an open window or messaged in the last day cost nothing.
    pub fit_now: u64,
    /// Pending recipients that wait for the window to move on.
    pub waiting: u64,
    pub next_frees_at: Option<Timestamp>,
    /// When all the waiting would fit, if nothing else used the budget meanwhile.
    pub all_fit_by: Option<Timestamp>,
}

/// The view for a campaign with `pending` recipients left; `None` for a campaign the limit
/// does not concern (free-form messages, which need an open window, or a final campaign).
pub async fn view<S: Store>(
    store: &S,
    limits: &LimitConfig,
    c: &Campaign,
    pending: u64,
) -> Result<Option<LimitView>> {
    if c.template.is_none()
        || matches!(
            c.status,
            CampaignStatus::Completed | CampaignStatus::Cancelled
        )
    {
        return Ok(None);
    }
    let portfolio = limits.portfolio_of(&c.phone_number_id);
    let limit = limits.effective(store.messaging_limit(portfolio).await?);
    let used = store.reach_use(portfolio, REACH_WINDOW).await?;
    let Some(limit) = limit else {
        return Ok(Some(LimitView {
            portfolio: portfolio.to_owned(),
            limit: None,
            used: used.used,
            available: pending,
            fit_now: pending,
            waiting: 0,
            next_frees_at: None,
            all_fit_by: None,
        }));
    };
    let available = limit.saturating_sub(used.used);
    let fit_now = pending.min(available);
    let waiting = pending - fit_now;
    let all_fit_by = if waiting == 0 || limit == 0 {
        None
    } else if waiting <= used.used {
        store.reach_frees(portfolio, REACH_WINDOW, waiting).await?
    } else {
        // Today's counted users all leave, then whole days of the limit each.
        let last = match used.used {
            0 => Some(Timestamp::now()),
            n => store.reach_frees(portfolio, REACH_WINDOW, n).await?,
        };
        let days = (waiting - used.used).div_ceil(limit);
        last.and_then(|t| {
            let span = jiff::SignedDuration::try_from(REACH_WINDOW).ok()?;
            t.checked_add(span.checked_mul(i32::try_from(days).ok()?)?)
                .ok()
        })
    };
    Ok(Some(LimitView {
        portfolio: portfolio.to_owned(),
        limit: Some(limit),
        used: used.used,
        available,
        fit_now,
        waiting,
        next_frees_at: used.frees_at,
        all_fit_by,
    }))
}
