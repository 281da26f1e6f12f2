//! `lethe demo`: a small company database with personal data in every table
//! the shipped jobs cover, generated deterministically (`lethe demo`, in `cli/demo.rs`, then plans,
//! runs and verifies on it). The same schema and data serve the integration tests on
//! PostgreSQL and MariaDB (`create_schema`, `seed`).

use crate::error::Error;
// The demo's column types, named per engine by the dialect.
use crate::sql::dialect::ColumnType as Ty;
use crate::sql::dialect::Dialect;
use crate::sql::{Builder, Db, Val};
use chrono::{DateTime, TimeDelta, Utc};

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Ty)],
    /// (column, referenced table, ON DELETE)
    fks: &'static [(&'static str, &'static str, &'static str)],
    indexes: &'static [&'static str],
}

const TABLES: &[Table] = &[
    Table {
        name: "users",
        cols: &[
            ("id", Ty::Id),
            ("phone", Ty::Text),
            ("name", Ty::Text),
            ("id_card_no", Ty::Text),
            ("birthday", Ty::Date),
            ("is_minor", Ty::Int),
            ("location_consent", Ty::Int),
            ("created_at", Ty::Ts),
            ("cancelled_at", Ty::Ts),
            // Key of the ID-card photo in the `media` store (O3: erased with the account).
            ("id_card_front_key", Ty::Text),
        ],
        fks: &[],
        indexes: &["cancelled_at", "birthday"],
    },
    Table {
        name: "legal_holds",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("reason", Ty::Text),
            ("placed_at", Ty::Ts),
        ],
        fks: &[],
        indexes: &["user_id"],
    },
    Table {
        name: "posts",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("body", Ty::Text),
            ("created_at", Ty::Ts),
            ("deleted_at", Ty::Ts),
        ],
        fks: &[("user_id", "users", "RESTRICT")],
        indexes: &["user_id", "deleted_at"],
    },
    Table {
        name: "comments",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("post_id", Ty::Ref),
            ("body", Ty::Text),
            ("created_at", Ty::Ts),
        ],
        fks: &[
            ("user_id", "users", "CASCADE"),
            ("post_id", "posts", "CASCADE"),
        ],
        indexes: &["user_id", "post_id"],
    },
    Table {
        name: "orders",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("consignee_name", Ty::Text),
            ("phone", Ty::Text),
            ("address", Ty::Text),
            ("total_cents", Ty::Int),
            ("completed_at", Ty::Ts),
        ],
        fks: &[("user_id", "users", "RESTRICT")],
        indexes: &["user_id", "completed_at"],
    },
    Table {
        name: "locations",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("lat", Ty::Text),
            ("lon", Ty::Text),
            ("recorded_at", Ty::Ts),
        ],
        fks: &[("user_id", "users", "CASCADE")],
        indexes: &["user_id", "recorded_at"],
    },
    // Customer-service tickets; their photos and voice notes are objects
    // under `tickets/{id}/` (O12: erased N days after the ticket closes).
    Table {
        name: "tickets",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("subject", Ty::Text),
            ("closed_at", Ty::Ts),
        ],
        fks: &[("user_id", "users", "RESTRICT")],
        indexes: &["user_id", "closed_at"],
    },
    Table {
        name: "events",
        cols: &[
            ("id", Ty::Id),
            ("user_ref", Ty::Text),
            ("device_id", Ty::Text),
            ("ip", Ty::Text),
            ("kind", Ty::Text),
            ("created_at", Ty::Ts),
        ],
        fks: &[],
        indexes: &["created_at", "user_ref"],
    },
    // Promotion entrants (O13, policy V(1)): name, address, phone and bank
    // account, collected only for the activity.
    Table {
        name: "promotion_entrants",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("activity", Ty::Text),
            ("name", Ty::Text),
            ("address", Ty::Text),
            ("phone", Ty::Text),
            ("bank_account", Ty::Text),
            ("activity_ended_at", Ty::Ts),
        ],
        fks: &[],
        indexes: &["activity_ended_at", "user_id"],
    },
    // SMS verification codes (O14, policy II(1)1): for authentication only.
    Table {
        name: "sms_codes",
        cols: &[
            ("id", Ty::Id),
            ("phone", Ty::Text),
            ("code", Ty::Text),
            ("created_at", Ty::Ts),
        ],
        fks: &[],
        indexes: &["created_at"],
    },
    // Login sessions with their cookie token and anonymous identifier (O14, III(1)).
    Table {
        name: "sessions",
        cols: &[
            ("id", Ty::Id),
            ("user_id", Ty::Ref),
            ("token", Ty::Text),
            ("anonymous_id", Ty::Text),
            ("last_seen_at", Ty::Ts),
        ],
        fks: &[],
        indexes: &["last_seen_at", "user_id"],
    },
];

/// Drop and create the demo tables.
pub async fn create_schema(db: &Db) -> Result<(), Error> {
    let d = db.dialect();
    for t in TABLES.iter().rev() {
        let mut b = Builder::new(d);
        b.push("DROP TABLE IF EXISTS ").push(&d.quote(t.name));
        db.execute(&b.finish()).await?;
    }
    for t in TABLES {
        let mut b = Builder::new(d);
        b.push("CREATE TABLE ").push(&d.quote(t.name)).push(" (");
        for (i, (c, k)) in t.cols.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.push(&d.quote(c)).push(" ").push(d.column_ddl(*k));
        }
        for (c, r, on) in t.fks {
            b.push(&format!(
                ", FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {on}",
                d.quote(c),
                d.quote(r),
                d.quote("id")
            ));
        }
        b.push(")");
        db.execute(&b.finish()).await?;
        for c in t.indexes {
            let mut b = Builder::new(d);
            b.push(&format!(
                "CREATE INDEX {} ON {} ({})",
                d.quote(&format!("ix_{}_{c}", t.name)),
                d.quote(t.name),
                d.quote(c)
            ));
            db.execute(&b.finish()).await?;
        }
    }
    Ok(())
}

/// A small deterministic generator (no randomness: the demo and tests repeat).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SURNAMES: &[&str] = &[
    "Zhang", "Wang", "Li", "Zhao", "Chen", "Liu", "Yang", "Huang", "Zhou", "Wu",
];
const GIVEN: &[&str] = &[
    "Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Hua", "Ying", "Tao",
];

/// What `seed` wrote, for the summary and for tests.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    pub users: u64,
    pub rows: u64,
    /// Users that are cancelled past the 15-day grace, not minors, not held.
    pub cancelled_due: Vec<i64>,
    pub held: Vec<i64>,
    /// Tickets as (id, user id, closed), for seeding their objects.
    pub tickets: Vec<(i64, i64, bool)>,
}

/// The personal phone number of user `i` (tests grep every output for these).
pub fn phone_of(i: i64) -> String {
    format!("1390{:07}", 1_234_567 + i * 7)
}

/// The ID-card number of user `i`.
pub fn id_card_of(i: i64) -> String {
    format!(
        "3101{:06}19{:02}{:06}",
        100_000 + i,
        70 + i % 30,
        400_000 + i * 3
    )
}

/// The key of user `i`'s ID-card photo (a column of `users`).
pub fn id_card_key_of(i: i64) -> String {
    format!("idcards/{i}/front.jpg")
}

/// The objects the demo gives user `i`: an avatar (two sizes) and an ID-card photo.
pub fn user_object_keys(i: i64) -> Vec<String> {
    vec![
        format!("avatars/{i}/avatar.jpg"),
        format!("avatars/{i}/thumb.jpg"),
        id_card_key_of(i),
    ]
}

/// The objects of ticket `t`: a photo and a voice note.
pub fn ticket_object_keys(t: i64) -> Vec<String> {
    vec![
        format!("tickets/{t}/photo.jpg"),
        format!("tickets/{t}/voice.amr"),
    ]
}

/// Put every user's and ticket's objects into `store`; returns how many.
pub async fn seed_objects(
    store: &dyn crate::objects::ObjectStore,
    seeded: &Seeded,
) -> Result<u64, Error> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let mut keys: Vec<String> = (1..=seeded.users as i64)
        .flat_map(user_object_keys)
        .collect();
    keys.extend(
        seeded
            .tickets
            .iter()
            .flat_map(|(t, _, _)| ticket_object_keys(*t)),
    );
    let n = keys.len() as u64;
    stream::iter(keys)
        .map(|key| async move {
            store
                .put(&crate::objects::NewObject {
                    body: format!("demo object {key}").into_bytes(),
                    key,
                    ..Default::default()
                })
                .await
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n)
}

async fn insert(db: &Db, table: &Table, rows: &[Vec<Option<String>>]) -> Result<(), Error> {
    let d = db.dialect();
    let per = (900 / table.cols.len()).max(1);
    for chunk in rows.chunks(per) {
        let mut b = Builder::new(d);
        b.push("INSERT INTO ").push(&d.quote(table.name)).push(" (");
        for (i, (c, _)) in table.cols.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.push(&d.quote(c));
        }
        b.push(") VALUES ");
        for (ri, row) in chunk.iter().enumerate() {
            if ri > 0 {
                b.push(", ");
            }
            b.push("(");
            for (ci, v) in row.iter().enumerate() {
                if ci > 0 {
                    b.push(", ");
                }
                let val = v.clone().map(Val::Text).unwrap_or(Val::Null);
                d.push_bind_as(&mut b, val, table.cols[ci].1);
            }
            b.push(")");
        }
        db.execute(&b.finish()).await?;
    }
    Ok(())
}

/// User `i`'s short-lived data, as ages: (days since the promotion they
/// entered ended, if they entered one; minutes since their SMS code was sent;
/// days since their session was last seen).
pub fn short_lived_ages(i: i64) -> (Option<u64>, i64, u64) {
    let promo = (i % 4 == 0).then_some((i % 60) as u64);
    (promo, (i % 6) * 20, (i % 14) as u64)
}

/// Fill the demo tables with `users` users and their data, dated relative to `now`.
pub async fn seed(db: &Db, users: u32, now: DateTime<Utc>) -> Result<Seeded, Error> {
    let n = i64::from(users);
    let mut sd = Seeder {
        d: db.dialect(),
        now,
        n,
        g: Gen(42),
        out: Seeded::default(),
        rows: Rows::default(),
    };
    for i in 1..=n {
        // The steps draw from the generator in this order, user after user:
        // the demo's data, and so its audit output, depend on it.
        let name = sd.user(i);
        sd.ticket(i, &name);
        sd.post(i, &name);
        sd.comments(i);
        sd.orders(i, &name);
        sd.locations(i);
        sd.short_lived(i, &name);
        sd.events(i);
    }
    let Seeder {
        mut out, rows: r, ..
    } = sd;
    for (tbl, rows) in TABLES.iter().zip([
        &r.users,
        &r.holds,
        &r.posts,
        &r.comments,
        &r.orders,
        &r.locs,
        &r.tickets,
        &r.events,
        &r.promos,
        &r.sms,
        &r.sessions,
    ]) {
        insert(db, tbl, rows).await?;
        out.rows += rows.len() as u64;
    }
    out.users = n as u64;
    Ok(out)
}

/// The rows of each demo table, as `insert` takes them.
#[derive(Default)]
struct Rows {
    users: Vec<Vec<Option<String>>>,
    holds: Vec<Vec<Option<String>>>,
    posts: Vec<Vec<Option<String>>>,
    comments: Vec<Vec<Option<String>>>,
    orders: Vec<Vec<Option<String>>>,
    locs: Vec<Vec<Option<String>>>,
    tickets: Vec<Vec<Option<String>>>,
    events: Vec<Vec<Option<String>>>,
    promos: Vec<Vec<Option<String>>>,
    sms: Vec<Vec<Option<String>>>,
    sessions: Vec<Vec<Option<String>>>,
}

/// The seed in progress: the one generator every step draws from, the rows
/// so far and what the tests are told about them.
struct Seeder<'a> {
    d: &'a dyn Dialect,
    now: DateTime<Utc>,
    /// How many users there are (comments point at any of their posts).
    n: i64,
    g: Gen,
    out: Seeded,
    rows: Rows,
}

fn s(v: String) -> Option<String> {
    Some(v)
}

fn days(n: u64) -> TimeDelta {
    TimeDelta::days(n as i64)
}

impl Seeder<'_> {
    /// User `i` (and their legal hold, if they get one); returns their name.
    fn user(&mut self, i: i64) -> String {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        let minor = i % 50 == 0;
        let flagged = i % 97 == 0;
        let birthday = if minor {
            now - days(365 * 9 + g.below(365 * 3))
        } else {
            now - days(365 * 20 + g.below(365 * 40))
        };
        let cancelled = if i % 7 == 0 {
            Some(now - days(20 + g.below(300)))
        } else if i % 13 == 0 {
            Some(now - days(g.below(10)))
        } else {
            None
        };
        let holds = &mut self.rows.holds;
        let held = i % 7 == 0 && i % 3 == 0 && holds.len() < 5;
        if held {
            let hold_id = holds.len() + 1;
            holds.push(vec![
                s(hold_id.to_string()),
                s(i.to_string()),
                s("litigation".into()),
                t(now - days(40)),
            ]);
            self.out.held.push(i);
        }
        if i % 7 == 0 && !held && !minor && !flagged {
            self.out.cancelled_due.push(i);
        }
        let name = format!(
            "{} {} {:04}",
            SURNAMES[(i % 10) as usize],
            GIVEN[(i / 10 % 10) as usize],
            i
        );
        self.rows.users.push(vec![
            s(i.to_string()),
            s(phone_of(i)),
            s(name.clone()),
            s(id_card_of(i)),
            Some(birthday.format("%Y-%m-%d").to_string()),
            s(i64::from(flagged).to_string()),
            s(i64::from(i % 9 != 0).to_string()),
            t(now - days(400 + g.below(1000))),
            cancelled.and_then(t),
            s(id_card_key_of(i)),
        ]);
        name
    }

    /// Every fifth user's support ticket.
    fn ticket(&mut self, i: i64, name: &str) {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        if i % 5 == 0 {
            // Closed 10 to 200 days ago, or still open.
            let closed = (i % 4 != 0).then(|| now - days(10 + g.below(190)));
            self.rows.tickets.push(vec![
                s(i.to_string()),
                s(i.to_string()),
                s(format!("ticket of {name}")),
                closed.and_then(t),
            ]);
            self.out.tickets.push((i, i, closed.is_some()));
        }
    }

    fn post(&mut self, i: i64, name: &str) {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        let pid = i;
        self.rows.posts.push(vec![
            s(pid.to_string()),
            s(i.to_string()),
            s(format!("post by {name}")),
            t(now - days(g.below(300))),
            if i % 11 == 0 {
                t(now - days(31 + g.below(60)))
            } else {
                None
            },
        ]);
    }

    fn comments(&mut self, i: i64) {
        let (d, now, n, g) = (self.d, self.now, self.n, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        for k in 0..2 {
            let cid = i * 2 + k - 1;
            let on_post = 1 + g.below(n as u64) as i64;
            self.rows.comments.push(vec![
                s(cid.to_string()),
                s(i.to_string()),
                s(on_post.to_string()),
                s(format!("comment {cid}")),
                t(now - days(g.below(200))),
            ]);
        }
    }

    fn orders(&mut self, i: i64, name: &str) {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        for k in 0..2 {
            let oid = i * 2 + k - 1;
            self.rows.orders.push(vec![
                s(oid.to_string()),
                s(i.to_string()),
                s(name.to_string()),
                s(phone_of(i)),
                s(format!("{} Nanjing Road, Shanghai", 100 + i)),
                s((1000 + g.below(90_000)).to_string()),
                t(now - days(g.below(365 * 5))),
            ]);
        }
    }

    fn locations(&mut self, i: i64) {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        for k in 0..3 {
            let lid = i * 3 + k - 2;
            self.rows.locs.push(vec![
                s(lid.to_string()),
                s(i.to_string()),
                s(format!("31.{:04}", g.below(10_000))),
                s(format!("121.{:04}", g.below(10_000))),
                t(now - days(g.below(120))),
            ]);
        }
    }

    /// Short-lived data (O13, O14), dated from `i` alone so the other
    /// tables' generated values do not move: no draw from the generator.
    fn short_lived(&mut self, i: i64, name: &str) {
        let (d, now) = (self.d, self.now);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        let (promo_ended, sms_age, session_age) = short_lived_ages(i);
        if let Some(days_ago) = promo_ended {
            self.rows.promos.push(vec![
                s(i.to_string()),
                s(i.to_string()),
                s(format!("spring-draw-{}", i % 3)),
                s(name.to_string()),
                s(format!("{} Nanjing Road, Shanghai", 100 + i)),
                s(phone_of(i)),
                s(format!("6222{:015}", 31_337 * i)),
                t(now - days(days_ago)),
            ]);
        }
        self.rows.sms.push(vec![
            s(i.to_string()),
            s(phone_of(i)),
            s(format!("{:06}", i * 7919 % 1_000_000)),
            t(now - TimeDelta::minutes(sms_age)),
        ]);
        self.rows.sessions.push(vec![
            s(i.to_string()),
            s(i.to_string()),
            s(format!("tok-{:016x}", i * 104_729)),
            s(format!("anon-{:012x}", i * 7907)),
            t(now - days(session_age)),
        ]);
    }

    fn events(&mut self, i: i64) {
        let (d, now, g) = (self.d, self.now, &mut self.g);
        let t = |at: DateTime<Utc>| Some(d.timestamp_text(at));
        for k in 0..10 {
            let eid = i * 10 + k - 9;
            self.rows.events.push(vec![
                s(eid.to_string()),
                s(i.to_string()),
                s(format!("dev-{:08x}", i * 7919)),
                s(format!("10.{}.{}.{}", i % 250, k, g.below(250))),
                s(["click", "follow", "favourite", "search", "share"][(k % 5) as usize].into()),
                t(now - days(g.below(365)) - TimeDelta::seconds(g.below(86_400) as i64)),
            ]);
        }
    }
}
