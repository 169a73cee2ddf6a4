//! What a sync tells the world: the status and its conditions (`status`), a failed sync's
//! Ready=False, Warning and retry (`failure`), and the sync metrics (`metrics`).

pub mod failure;
mod metrics;
pub mod status;

pub(super) use metrics::rotation_reason;
