//! What the fuzzer sends: valid sales with random amounts, kinds, days and
//! seqs, mutated as text (so NULs, lone surrogates, integers beyond 64 bits,
//! repeated keys and deep nesting can be written), and malformed envelopes.
//! Everything comes from one seeded generator, so a seed replays a run.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::sales::sale;

const MAX_SAFE: i64 = (1 << 53) - 1;

/// Stands for a value written as raw text after serializing.
const HOLE: &str = "\"@@hole@@\"";

/// Times a valid sale may carry: three business days and several hours in
/// Europe/Berlin, all in the past.
const OCCURRED_AT: &[&str] = &[
    "2026-11-20T10:15:00+01:00",
    "2026-11-19T23:30:00Z",
    "2026-11-20T23:30:00+01:00",
    "2026-11-21T08:00:00-05:00",
];

/// Hostile strings as JSON text.
const NASTY_TEXT: &[&str] = &[
    r#""\u0000""#,
    r#""A\u0000B""#,
    r#""\ud800""#,
    r#""x\udfff""#,
    r#""\ud83d\ude00""#,
    r#""""#,
    r#"" ""#,
    r#""0000-01-01T00:00:00Z""#,
    r#""1970-01-01T00:00:00Z""#,
    r#""1999-12-31T23:59:59Z""#,
    r#""2000-01-01T00:00:00Z""#,
    r#""2099-01-01T00:00:00Z""#,
    r#""2026-11-20T10:00:00""#,
    r#""void""#,
    r#""refund""#,
    r#""bogus""#,
    r#""XXX""#,
    r#""CHF""#,
    r#""cash""#,
];

/// Hostile numbers as JSON text: at, beyond and far beyond the bounds.
const NASTY_NUMBERS: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "9007199254740991",
    "9007199254740992",
    "-9007199254740992",
    "4611686018427387904",
    "99999999999999999999",
    "-99999999999999999999",
    "18446744073709551615",
    "1e30",
    "1e400",
    "-1e400",
    "1.5",
    "-0",
    "0",
    "-1",
];

/// Values of the wrong shape for most members.
const NASTY_OTHER: &[&str] = &[
    "null",
    "true",
    "[]",
    "{}",
    r#"{"sku": "A"}"#,
    r#"[{"sku": 1}]"#,
];

/// What a member holds, so most values put in its place are of a type that
/// gets past serde and reaches the rules (bounds included).
#[derive(Clone, Copy)]
enum Like {
    Text,
    Number,
    Any,
}

/// The members a mutation may replace: (list, index 0 of it or the sale itself, member).
const MEMBERS: &[(Option<&str>, &str, Like)] = &[
    (None, "sale_id", Like::Any),
    (None, "seq", Like::Number),
    (None, "kind", Like::Text),
    (None, "occurred_at", Like::Text),
    (None, "currency", Like::Text),
    (None, "lines", Like::Any),
    (None, "tenders", Like::Any),
    (None, "total_minor", Like::Number),
    (None, "tax_minor", Like::Number),
    (None, "discount_minor", Like::Number),
    (None, "refers_to_sale_id", Like::Any),
    (Some("lines"), "sku", Like::Text),
    (Some("lines"), "description", Like::Text),
    (Some("lines"), "quantity", Like::Number),
    (Some("lines"), "amount_minor", Like::Number),
    (Some("tenders"), "method", Like::Text),
    (Some("tenders"), "amount_minor", Like::Number),
];

/// What one request sends.
pub enum Request {
    /// A batch with a fresh key: its sales as text, in order.
    Batch(Vec<String>),
    /// A body whose envelope is malformed; it must fail as a whole with a 4xx.
    Malformed(Vec<u8>),
}

pub struct Fuzzer {
    rng: StdRng,
    next_seq: i64,
    /// Valid sales generated so far, per till (sent as they are or mutated),
    /// to send again or to void.
    sent: Vec<Vec<Value>>,
}

impl Fuzzer {
    pub fn new(seed: u64, tills: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            next_seq: 1,
            sent: vec![Vec::new(); tills],
        }
    }

    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u128(self.rng.random())
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    pub fn request(&mut self, till: usize) -> Request {
        if self.chance(0.1) {
            return Request::Malformed(self.malformed(till));
        }
        let n = self.rng.random_range(1..=8);
        Request::Batch((0..n).map(|_| self.sale_text(till)).collect())
    }

    /// A hostile value, mostly of the type `like` says.
    fn nasty(&mut self, like: Like) -> String {
        let roll = self.rng.random_range(0..10);
        let list = match like {
            Like::Text if roll < 3 => return self.long_text(),
            Like::Text if roll < 8 => NASTY_TEXT,
            Like::Number if roll < 2 => return self.rng.random::<i64>().to_string(),
            Like::Number if roll < 8 => NASTY_NUMBERS,
            _ => match self.rng.random_range(0..10) {
                0 => {
                    let depth = self.rng.random_range(1..5000);
                    return format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                }
                1 => return json!(self.uuid()).to_string(),
                2..5 => NASTY_TEXT,
                5..8 => NASTY_NUMBERS,
                _ => NASTY_OTHER,
            },
        };
        list.choose(&mut self.rng).unwrap().to_string()
    }

    /// A string of 0 to 600 characters, NULs, quotes and emoji among them.
    fn long_text(&mut self) -> String {
        let alphabet = ['a', 'é', '€', '\u{0}', '\u{1F600}', '"', '\\', '\n'];
        let len = self.rng.random_range(0..600);
        let text: String = (0..len)
            .map(|_| *alphabet.choose(&mut self.rng).unwrap())
            .collect();
        serde_json::to_string(&text).unwrap()
    }

    /// A valid sale or refund of `till` with random amounts.
    fn valid(&mut self, till: usize) -> Value {
        let seq = match self.rng.random_range(0..20) {
            0 => self.rng.random_range(1..self.next_seq.max(2)),
            1 => MAX_SAFE - self.rng.random_range(0..3),
            _ => {
                self.next_seq += 1;
                self.next_seq - 1
            }
        };
        let total = if self.chance(0.05) {
            self.rng.random_range(0..=MAX_SAFE)
        } else {
            self.rng.random_range(0..100_000)
        };
        let cash = self.rng.random_range(0..=total);
        let mut s = sale(seq);
        s["sale_id"] = json!(self.uuid());
        s["kind"] = json!(if self.chance(0.2) { "refund" } else { "sale" });
        s["occurred_at"] = json!(OCCURRED_AT.choose(&mut self.rng).unwrap());
        s["currency"] = json!(if self.chance(0.2) { "CHF" } else { "EUR" });
        s["lines"][0]["amount_minor"] = json!(total / 2);
        s["lines"][1]["amount_minor"] = json!(total - total / 2);
        s["tenders"] = json!([
            {"method": "cash", "amount_minor": cash},
            {"method": "card", "amount_minor": total - cash}
        ]);
        s["total_minor"] = json!(total);
        s["tax_minor"] = json!(self.rng.random_range(0..=total));
        s["discount_minor"] = json!(self.rng.random_range(0..=total.min(10_000)));
        self.sent[till].push(s.clone());
        s
    }

    /// A void of an earlier sale of this till (or of another till).
    fn void(&mut self, till: usize) -> Option<Value> {
        let from = if self.chance(0.9) {
            till
        } else {
            self.below(self.sent.len())
        };
        let mut void = self.sent[from].choose(&mut self.rng)?.clone();
        void["refers_to_sale_id"] = void["sale_id"].clone();
        void["sale_id"] = json!(self.uuid());
        void["seq"] = json!(self.next_seq);
        self.next_seq += 1;
        void["kind"] = json!("void");
        Some(void)
    }

    /// One element of a batch.
    fn sale_text(&mut self, till: usize) -> String {
        let mut sale = self.valid(till);
        match self.rng.random_range(0..20) {
            0..=7 => sale.to_string(),
            8 => self.void(till).unwrap_or(sale).to_string(),
            // An earlier sale again: a duplicate, or a conflict from another till.
            9 => {
                let from = self.below(self.sent.len());
                let earlier = self.sent[from].choose(&mut self.rng).cloned();
                earlier.unwrap_or(sale).to_string()
            }
            10..=15 => {
                let (list, member, like) = *MEMBERS.choose(&mut self.rng).unwrap();
                match list {
                    Some(list) => sale[list][0][member] = json!("@@hole@@"),
                    None => sale[member] = json!("@@hole@@"),
                }
                self.fill(sale.to_string(), like)
            }
            // An unknown member, or a member written twice.
            16 => {
                let key = ["extra", "seq", "total_minor", "sku", "\\u0000"]
                    .choose(&mut self.rng)
                    .unwrap();
                let text = sale.to_string();
                self.fill(format!("{{\"{key}\": {HOLE}, {}", &text[1..]), Like::Any)
            }
            17 => {
                let key = ["seq", "lines", "kind"].choose(&mut self.rng).unwrap();
                sale.as_object_mut().unwrap().remove(*key);
                sale.to_string()
            }
            _ => self.nasty(Like::Any),
        }
    }

    fn fill(&mut self, text: String, like: Like) -> String {
        let value = self.nasty(like);
        text.replacen(HOLE, &value, 1)
    }

    fn malformed(&mut self, till: usize) -> Vec<u8> {
        let sale = self.sale_text(till);
        let good = format!(r#"{{"sales": [{sale}]}}"#);
        match self.rng.random_range(0..9) {
            0 => {
                let cut = self.rng.random_range(0..good.len());
                good.as_bytes()[..cut].to_vec()
            }
            1 => br#"{"sales": []}"#.to_vec(),
            // Not an array, or an empty one.
            2 => {
                let not_a_list = [NASTY_TEXT, NASTY_NUMBERS, NASTY_OTHER].concat();
                let value = not_a_list.choose(&mut self.rng).unwrap();
                format!(r#"{{"sales": {value}}}"#).into_bytes()
            }
            3 => format!(r#"{{"sales": [{sale}], "sales": [{sale}]}}"#).into_bytes(),
            4 => format!("[{good}]").into_bytes(),
            5 => (0..self.rng.random_range(0..64))
                .map(|_| self.rng.random::<u8>())
                .collect(),
            6 => format!(r#"{{"sales": [{}]}}"#, vec!["{}"; 501].join(",")).into_bytes(),
            7 => format!(r#"{{"sales": [{}]}}"#, "[".repeat(200_000)).into_bytes(),
            _ => {
                let huge = "x".repeat((1 << 20) + 1);
                format!(r#"{{"sales": [{{"description": "{huge}"}}]}}"#).into_bytes()
            }
        }
    }
}
