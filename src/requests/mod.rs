//! Requests: one person asks for their data to be erased, and Lethe answers
//! within N working days (policy VII(7), obligation O7).
//!
//! Owns the request's life: kinds, states (`pending` → `done` | `held` |
//! `rejected`; *overdue* is derived, never stored), the policy's VII(7)
//! reasons for a rejection, due instants ([`calendar`]) and the request
//! store in the state store ([`store`]). The engine acts on the open
//! requests' subjects; [`process`] decides, after the request jobs ran,
//! which requests are done or held.
//!
//! It must never let a raw subject out: list, show, receipts, the audit
//! log and the log lines carry the subject's keyed hash only, and once a
//! request closes (`done`, `rejected`) the raw subject is removed from the
//! state store too.

pub mod calendar;
pub mod intake;
pub mod process;
pub mod store;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the person asked for. Only erasure is acted on by request jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Erasure,
}

impl Kind {
    /// The word stored and printed for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Erasure => "erasure",
        }
    }

    /// A kind from its word (`request add --kind`), or the message saying
    /// which words there are.
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "erasure" => Ok(Kind::Erasure),
            other => Err(format!("unknown request kind `{other}` (use erasure)")),
        }
    }
}

/// Where a request stands. `Held` stays open: the raw subject is kept so
/// the next run can finish once the hold is lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Done,
    Held,
    Rejected,
}

impl RequestState {
    /// Every state, in the order listings group them.
    pub const ALL: [RequestState; 4] = [
        RequestState::Pending,
        RequestState::Done,
        RequestState::Held,
        RequestState::Rejected,
    ];

    /// The word stored and printed for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Done => "done",
            RequestState::Held => "held",
            RequestState::Rejected => "rejected",
        }
    }

    /// A state from its word (`request list --state`), or the message
    /// saying which words there are.
    pub fn parse(s: &str) -> Result<RequestState, String> {
        RequestState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown request state `{s}` (use pending, done, held or rejected)")
            })
    }

    /// Open requests are acted on by every run and keep their raw subject.
    pub fn is_open(self) -> bool {
        matches!(self, RequestState::Pending | RequestState::Held)
    }
}

/// The policy's VII(7) grounds for not answering a request, as `--reason`
/// takes them.
pub const REJECT_REASONS: &[(&str, &str)] = &[
    (
        "legal-obligation",
        "related to the fulfillment of legal obligations",
    ),
    (
        "national-security",
        "directly related to national security and national defense security",
    ),
    (
        "public-interest",
        "directly related to public safety, public health and major public interests",
    ),
    (
        "criminal-proceedings",
        "directly related to criminal investigation, prosecution, trial or judgment execution",
    ),
    (
        "bad-faith",
        "the subject shows subjective malice or abuses their rights",
    ),
    (
        "vital-interests",
        "safeguarding the life or property of the subject or others, consent hard to obtain",
    ),
    (
        "harm-to-others",
        "answering would seriously damage the legitimate rights and interests of others",
    ),
    ("trade-secrets", "involves trade secrets"),
    ("unfounded-repetition", "ungroundedly repeated request"),
    ("excessive-means", "requires excessive technical means"),
    ("unrealistic", "extremely unrealistic request"),
];

/// `Ok` when `reason` is one of [`REJECT_REASONS`].
pub fn check_reason(reason: &str) -> Result<(), String> {
    if REJECT_REASONS.iter().any(|(r, _)| *r == reason) {
        Ok(())
    } else {
        let names: Vec<&str> = REJECT_REASONS.iter().map(|(r, _)| *r).collect();
        Err(format!(
            "`{reason}` is not one of the policy's VII(7) reasons: {}",
            names.join(", ")
        ))
    }
}

/// One request as the state store keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub kind: Kind,
    pub state: RequestState,
    /// The subject as the application knows it: only while the request is open.
    #[serde(skip)]
    pub subject: Option<String>,
    /// Keyed hash of the subject (the audit log's stand-in for it).
    pub subject_hash: String,
    pub received: DateTime<Utc>,
    pub due: DateTime<Utc>,
    /// The company's ticket id, as given.
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    /// Why it is held or rejected (a hold table, Object Lock, a VII(7) reason).
    pub reason: Option<String>,
    /// The operator's note on a rejection.
    pub note: Option<String>,
    /// When it became done or rejected.
    pub closed: Option<DateTime<Utc>>,
    /// `<source>.<table>` and the row id it was taken from, for intake requests.
    pub intake: Option<String>,
}

impl Request {
    /// Open and past its due instant. A held request has been answered
    /// (what is kept and why) and is not overdue.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.state == RequestState::Pending && now > self.due
    }
}
