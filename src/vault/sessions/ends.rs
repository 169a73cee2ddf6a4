//! Tokens whose end is known (renewal capped by the max TTL, or not renewable): the leases they
//! issued must be replaced before then.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::token::Session;

/// When a token's end became known, and the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenEnd {
    pub known: jiff::Timestamp,
    pub end: jiff::Timestamp,
}

/// Tokens whose end is known, by [`token_ref`].
#[derive(Default)]
pub(super) struct Ends {
    pub(super) known: Mutex<HashMap<String, TokenEnd>>,
    pub(super) notify: Mutex<Option<UnboundedSender<String>>>,
}

impl Ends {
    /// Records (once) and reports the end of `session`'s token, if it is known.
    pub(super) fn note(&self, session: &Session) {
        let Some(end) = session.end() else { return };
        self.note_ref(&session.token_ref, end.saturating_duration_since(Instant::now()));
    }

    /// Records (once) and reports that token `token_ref` ends in `left`.
    pub(super) fn note_ref(&self, token_ref: &str, left: Duration) {
        let now = jiff::Timestamp::now();
        let end = now
            .saturating_add(jiff::SignedDuration::try_from(left).unwrap_or_default())
            .unwrap_or(now);
        let mut known = self.known.lock();
        known.retain(|_, e| e.end > now);
        if known
            .insert(token_ref.to_owned(), TokenEnd { known: now, end })
            .is_some()
        {
            return;
        }
        drop(known);
        tracing::info!(token = token_ref, %end, "Vault token reaches its end; its leases must be replaced");
        if let Some(tx) = self.notify.lock().as_ref() {
            let _ = tx.send(token_ref.to_owned());
        }
    }
}
