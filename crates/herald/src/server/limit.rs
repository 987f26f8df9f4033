//! A campaign's place in its portfolio's messaging limit, as the API shows it (ARCHITECTURE
//! §13): the limit, its use over the moving 24 h, how many of the campaign's pending
//! recipients fit now, how many wait, when the next place frees and when all would fit.

use herald_core::{CampaignStatus, REACH_WINDOW};
use herald_sender::LimitConfig;
use herald_store::{Campaign, Result, Store};
use jiff::Timestamp;
use serde::Serialize;

/// The `messaging_limit` object of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LimitView {
    pub portfolio: String,
    /// Unique users per moving 24 h outside open windows; `None`: none enforced (unlimited,
    /// or not known and no cap configured).
    pub limit: Option<u64>,
    pub used: u64,
    pub available: u64,
    /// Pending recipients that fit in the budget now, sharing it round-robin with the
    /// portfolio's other running template campaigns. An estimate from above for the
    /// waiting: recipients with an open window or messaged in the last day cost nothing.
    pub fit_now: u64,
    /// Pending recipients that wait for the window to move on.
    pub waiting: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_frees_at: Option<Timestamp>,
    /// When all the waiting would fit, if nothing else used the budget meanwhile.
    #[schema(value_type = Option<String>, format = DateTime)]
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
    // The portfolio's other running template campaigns draw on the same budget, and claims
    // share it out round-robin.
    let others = others_pending(store, limits, portfolio, c).await?;
    let fit_now = fair_share(available, pending, &others);
    let waiting = pending - fit_now;
    let demand = pending + others.iter().sum::<u64>();
    // The last of them goes about when the portfolio's whole demand has room.
    let rest = demand.saturating_sub(available);
    let all_fit_by = if waiting == 0 || limit == 0 {
        None
    } else if rest <= used.used {
        store.reach_frees(portfolio, REACH_WINDOW, rest).await?
    } else {
        // Today's counted users all leave, then whole days of the limit each.
        let last = match used.used {
            0 => Some(Timestamp::now()),
            n => store.reach_frees(portfolio, REACH_WINDOW, n).await?,
        };
        let days = (rest - used.used).div_ceil(limit);
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

/// The pending recipients of the portfolio's other running template campaigns.
async fn others_pending<S: Store>(
    store: &S,
    limits: &LimitConfig,
    portfolio: &str,
    c: &Campaign,
) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for r in store.running_campaigns().await? {
        if r.id == c.id || limits.portfolio_of(&r.phone_number_id) != portfolio {
            continue;
        }
        if store.campaign(&r.id).await?.template.is_none() {
            continue;
        }
        out.push(store.stats(&r.id).await?.pending);
    }
    Ok(out)
}

/// How many of `mine` get a place when `available` places are shared out evenly among the
/// campaigns wanting them (`mine` and `others`), a campaign that wants fewer than its share
/// leaving the rest to the others.
fn fair_share(available: u64, mine: u64, others: &[u64]) -> u64 {
    let mut all: Vec<u64> = others.iter().copied().filter(|p| *p > 0).collect();
    all.push(mine);
    all.sort_unstable();
    let (mut left, mut campaigns) = (available, all.len() as u64);
    for want in all {
        let share = left / campaigns.max(1);
        if want > share {
            return mine.min(share);
        }
        left -= want;
        campaigns -= 1;
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn places_are_shared_evenly_and_what_one_leaves_goes_to_the_others() {
        assert_eq!(fair_share(250, 200, &[]), 200);
        assert_eq!(fair_share(250, 200, &[200]), 125);
        assert_eq!(fair_share(250, 200, &[50]), 200, "the other wants only 50");
        assert_eq!(fair_share(250, 10, &[200, 200]), 10);
        assert_eq!(fair_share(250, 200, &[10, 200]), 120);
        assert_eq!(fair_share(0, 200, &[200]), 0);
        assert_eq!(fair_share(250, 0, &[200]), 0);
    }
}
