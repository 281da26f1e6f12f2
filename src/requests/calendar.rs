//! Due instants of requests: the working-day calendar and [`Deadlines`],
//! which live in the crate-level [`crate::calendar`] leaf so that `config`
//! (which builds them from `[requests]`) needs nothing from `requests`.

pub use crate::calendar::{Calendar, Deadlines, end_of_day, local_date};
