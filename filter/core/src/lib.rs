//! Pure core of the webhook filter (skeleton; see issue #2).
#![forbid(unsafe_code)]

pub mod event;
