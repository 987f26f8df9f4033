//! The store's one error type. Redis never leaks through it: callers see "unavailable, try
//! again" or a domain refusal.

use herald_core::{CampaignId, TransitionError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or failed mid-call. Retryable: nothing settled is lost
    /// (every transition is one atomic script), and a retried settlement is a no-op.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The backend is out of memory and refuses writes (Redis at `maxmemory` with
    /// `noeviction`). Retryable like [`Self::Unavailable`]: nothing was half-applied, and the
    /// call goes through once memory is freed. The text says what to do.
    #[error("the store is full: {0}")]
    Full(String),
    #[error("campaign {0} does not exist")]
    NotFound(CampaignId),
    #[error(transparent)]
    IllegalTransition(#[from] TransitionError),
    /// The campaign is completed or cancelled and cannot take this operation.
    #[error("campaign {0} is {1} and cannot change")]
    Final(CampaignId, herald_core::CampaignStatus),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The campaign's state does not allow this now (it may later): e.g. deleting one that
    /// has not ended, or whose sends are still in flight.
    #[error("{0}")]
    Conflict(String),
    /// Stored data Herald cannot read: a bug or tampering, never a user error.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Full(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
