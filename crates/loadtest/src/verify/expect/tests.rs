use std::str::FromStr;

use chrono::{DateTime, NaiveDate};

use super::*;
use crate::args::AdminToken;
use crate::generator::Money;
use crate::verify::TerminalToken;
use crate::verify::figures::{DayFigures, Measures, Split};

const D1: &str = "2026-11-20";
const D2: &str = "2026-11-21";

fn date(day: &str) -> NaiveDate {
    NaiveDate::from_str(day).unwrap()
}

/// A fact of `total` (all item lines, tax inside), tax a tenth of it,
/// discount a twentieth (sales only), at `hh:mm` Berlin time on `day`.
fn fact(
    seq: i64,
    kind: Kind,
    day: &str,
    time: &str,
    currency: &'static str,
    total: i64,
) -> ExpectedSale {
    ExpectedSale {
        sale_id: Uuid::new_v4(),
        seq,
        kind,
        currency,
        occurred_at: DateTime::parse_from_rfc3339(&format!("{day}T{time}:00+01:00")).unwrap(),
        business_date: date(day),
        money: Money {
            total_minor: total,
            tax_minor: total / 10,
            discount_minor: if kind == Kind::Sale { total / 20 } else { 0 },
            item_sales_minor: total,
            ..Money::default()
        },
        refers_to_sale_id: None,
        fate: Fate::Acknowledged,
        first_sent: None,
        first_stored: None,
    }
}

fn naming(mut sale: ExpectedSale, of: &ExpectedSale) -> ExpectedSale {
    sale.refers_to_sale_id = Some(of.sale_id);
    sale.currency = of.currency;
    sale
}

fn with_fate(mut sale: ExpectedSale, fate: Fate) -> ExpectedSale {
    sale.fate = fate;
    sale
}

fn till(number: usize, sales: Vec<ExpectedSale>) -> ExpectedTill {
    ExpectedTill {
        number,
        terminal_id: Uuid::new_v4(),
        token: TerminalToken::new("t".into()),
        sales,
        link_lost: false,
        restored_by: None,
        retirement: None,
        voids_pushed_ahead: 0,
    }
}

fn fleet(tills: Vec<Vec<ExpectedSale>>) -> Fleet {
    Fleet {
        store_id: Uuid::new_v4(),
        admin: AdminToken::from_str("tsa").unwrap(),
        tills: tills
            .into_iter()
            .enumerate()
            .map(|(n, s)| till(n, s))
            .collect(),
    }
}

/// Every sale as its fate says: acknowledged ones held, and nothing else.
fn as_acknowledged(fleet: &Fleet) -> Presence {
    let mut presence = Presence::default();
    for sale in fleet.tills.iter().flat_map(|t| &t.sales) {
        match sale.fate {
            Fate::Acknowledged => presence.stored.insert(sale.sale_id),
            Fate::Refused { .. } => presence.refused.insert(sale.sale_id),
            _ => false,
        };
    }
    presence
}

fn key(kind: &str, mut ids: Vec<Uuid>) -> ExceptionKey {
    ids.sort_unstable();
    (kind.to_owned(), ids)
}

fn measures(e: &Expected, till: usize, day: &str, currency: &str) -> Measures {
    e.tills[till].rows.totals[&(date(day), currency.to_owned())]
}

fn day(e: &Expected, till: usize, day: &str, currency: &str) -> DayFigures {
    e.tills[till].days[&date(day)][currency]
}

/// The spec's rule: a void on till B the next day takes till A's sale out
/// of B's day, with the sale's amounts; A's day keeps the sale.
#[test]
fn a_void_takes_its_sale_out_of_the_voids_own_day_and_till() {
    let sale = fact(1, Kind::Sale, D1, "10:00", "EUR", 1000);
    let other = fact(2, Kind::Sale, D1, "10:05", "EUR", 500);
    let refund = naming(fact(3, Kind::Refund, D1, "11:00", "EUR", 200), &other);
    // A void's own amounts do not matter: the sale's come out.
    let void = naming(fact(1, Kind::Void, D2, "09:00", "EUR", 999), &sale);
    let fleet = fleet(vec![vec![sale, other, refund], vec![void]]);
    let e = expected(&fleet, &as_acknowledged(&fleet));

    let a = measures(&e, 0, D1, "EUR");
    let a_split = Split {
        tax_minor: 150 - 20,
        item_sales_minor: 1500 - 200,
        net_sales_minor: 1350 - 180,
        ..Split::default()
    };
    assert_eq!(
        a,
        Measures {
            sales_count: 2,
            refunds_count: 1,
            voids_count: 0,
            gross_minor: 1500,
            refunds_minor: 200,
            discounts_minor: 75,
            split: a_split,
        }
    );
    assert_eq!(a.net_minor(), 1300);
    assert_eq!(
        day(&e, 0, D1, "EUR"),
        DayFigures {
            sales_count: 3,
            net_minor: 1300,
            split: a_split,
        }
    );

    let b = measures(&e, 1, D2, "EUR");
    let b_split = Split {
        tax_minor: -100,
        item_sales_minor: -1000,
        net_sales_minor: -900,
        ..Split::default()
    };
    assert_eq!(
        b,
        Measures {
            sales_count: -1,
            voids_count: 1,
            gross_minor: -1000,
            discounts_minor: -50,
            split: b_split,
            ..Measures::default()
        }
    );
    assert_eq!(
        day(&e, 1, D2, "EUR"),
        DayFigures {
            sales_count: 1,
            net_minor: -1000,
            split: b_split,
        }
    );
    assert!(e.exceptions.is_empty(), "{:?}", e.exceptions);
}

/// The store's rows are its tills' added up, a void on the till that rang
/// it. A till whose sales under a code are outnumbered by its voids of
/// other tills' sales has a tax row of no count and some tax: the tax is
/// still due, in the till's rows as in the store's.
#[test]
fn the_stores_rows_are_its_tills_added_up() {
    let a = fact(1, Kind::Sale, D1, "10:00", "EUR", 1000);
    let b = fact(1, Kind::Sale, D1, "10:01", "EUR", 500);
    let void = naming(fact(2, Kind::Void, D1, "10:02", "EUR", 1000), &a);
    let fleet = fleet(vec![vec![a], vec![b, void]]);
    let e = expected(&fleet, &as_acknowledged(&fleet));

    let store = e.store.totals[&(date(D1), "EUR".to_owned())];
    let (till_a, till_b) = (measures(&e, 0, D1, "EUR"), measures(&e, 1, D1, "EUR"));
    assert_eq!(
        (store.sales_count, store.voids_count, store.gross_minor),
        (1, 1, 500)
    );
    assert_eq!(store.split.net_sales_minor, 450);
    assert_eq!(
        store.split.tax_minor,
        till_a.split.tax_minor + till_b.split.tax_minor
    );
    let unsplit = (date(D1), "EUR".to_owned(), String::new(), 0);
    let store_tax = e.store.taxes[&unsplit];
    assert_eq!((store_tax.sales_count, store_tax.tax_minor), (1, 50));
    let b_tax = e.tills[1].rows.taxes[&unsplit];
    assert_eq!((b_tax.sales_count, b_tax.tax_minor), (0, -50));
}

#[test]
fn a_voided_refund_is_taken_out_of_the_refunds() {
    let sale = fact(1, Kind::Sale, D1, "10:00", "CHF", 1000);
    let refund = naming(fact(2, Kind::Refund, D1, "10:30", "CHF", 300), &sale);
    let void = naming(fact(3, Kind::Void, D1, "10:31", "CHF", 300), &refund);
    let fleet = fleet(vec![vec![sale, refund, void]]);
    let e = expected(&fleet, &as_acknowledged(&fleet));
    let m = measures(&e, 0, D1, "CHF");
    assert_eq!((m.refunds_count, m.refunds_minor, m.voids_count), (0, 0, 1));
    assert_eq!((m.split.tax_minor, m.net_minor()), (100, 1000));
    let d = day(&e, 0, D1, "CHF");
    assert_eq!((d.sales_count, d.net_minor, d.split), (3, 1000, m.split));
}

#[test]
fn only_the_first_void_takes_a_sale_out_and_later_ones_are_flagged() {
    let sale = fact(1, Kind::Sale, D1, "10:00", "EUR", 1000);
    let later = naming(fact(2, Kind::Void, D1, "10:10", "EUR", 1000), &sale);
    let first = naming(fact(1, Kind::Void, D1, "10:05", "EUR", 1000), &sale);
    let void_of_void = naming(fact(3, Kind::Void, D1, "10:20", "EUR", 1000), &first);
    let ids = (
        sale.sale_id,
        first.sale_id,
        later.sale_id,
        void_of_void.sale_id,
    );
    let fleet = fleet(vec![vec![sale, later, void_of_void], vec![first]]);
    let e = expected(&fleet, &as_acknowledged(&fleet));
    assert_eq!(measures(&e, 1, D1, "EUR").gross_minor, -1000);
    assert_eq!(measures(&e, 0, D1, "EUR").gross_minor, 1000);
    assert_eq!(measures(&e, 0, D1, "EUR").voids_count, 2);
    assert_eq!(
        e.exceptions,
        BTreeSet::from([
            key("duplicate_void", vec![ids.2, ids.0]),
            key("void_of_void", vec![ids.3, ids.1]),
        ])
    );
}

/// A void or refund whose sale never reached the server (still queued
/// when the drain gave up) takes nothing out and waits, listed.
#[test]
fn a_reference_to_a_sale_not_held_takes_nothing_out_and_is_listed_unmatched() {
    let queued = with_fate(
        fact(1, Kind::Sale, D1, "10:00", "EUR", 1000),
        Fate::NeverSent,
    );
    let void = naming(fact(1, Kind::Void, D1, "10:05", "EUR", 1000), &queued);
    let refund = naming(fact(2, Kind::Refund, D1, "10:06", "EUR", 100), &queued);
    let unmatched = [void.sale_id, refund.sale_id];
    let fleet = fleet(vec![vec![queued], vec![void, refund]]);
    let e = expected(&fleet, &as_acknowledged(&fleet));
    let b = measures(&e, 1, D1, "EUR");
    assert_eq!(
        (b.sales_count, b.gross_minor, b.voids_count, b.refunds_minor),
        (0, 0, 1, 100)
    );
    assert!(e.tills[0].rows.totals.is_empty());
    assert_eq!(
        e.exceptions,
        BTreeSet::from([
            key("unmatched_reference", vec![unmatched[0]]),
            key("unmatched_reference", vec![unmatched[1]]),
        ])
    );
}

#[test]
fn refused_seqs_are_settled_and_seqs_never_held_are_missing() {
    let refused = Fate::Refused {
        code: "terminal_retired".into(),
    };
    let sales = vec![
        fact(1, Kind::Sale, D1, "10:00", "EUR", 100),
        with_fate(fact(2, Kind::Sale, D1, "10:01", "EUR", 100), refused),
        with_fate(
            fact(3, Kind::Sale, D1, "10:02", "EUR", 100),
            Fate::NeverSent,
        ),
        fact(4, Kind::Sale, D1, "10:03", "EUR", 100),
        with_fate(
            fact(5, Kind::Sale, D1, "10:04", "EUR", 100),
            Fate::NeverSent,
        ),
    ];
    let refused_id = sales[1].sale_id;
    let fleet = fleet(vec![sales]);
    let e = expected(&fleet, &as_acknowledged(&fleet));
    assert_eq!(
        e.tills[0].sync,
        SyncExpected {
            highest_seq: 4,
            contiguous_through_seq: 2,
            missing_seq_ranges: vec![[3, 3]],
            sales_stored: 2,
        }
    );
    assert_eq!(
        e.exceptions,
        BTreeSet::from([key("refused", vec![refused_id])])
    );
    assert_eq!(day(&e, 0, D1, "EUR").sales_count, 2);
}

/// A till restored from a backup: both sales of each reused seq are held
/// and counted, and each reused seq is listed once, naming both.
#[test]
fn each_reused_seq_is_listed_once_with_every_sale_holding_it() {
    let mut sales: Vec<ExpectedSale> = (1..=5)
        .map(|seq| fact(seq, Kind::Sale, D1, "10:00", "EUR", 100))
        .collect();
    sales.extend((4..=6).map(|seq| fact(seq, Kind::Sale, D1, "11:00", "EUR", 100)));
    let pairs =
        [(3, 5), (4, 6)].map(|(a, b)| key("seq_reused", vec![sales[a].sale_id, sales[b].sale_id]));
    let fleet = fleet(vec![sales]);
    let e = expected(&fleet, &as_acknowledged(&fleet));
    assert_eq!(e.exceptions, BTreeSet::from(pairs));
    assert_eq!(
        e.tills[0].sync,
        SyncExpected {
            highest_seq: 6,
            contiguous_through_seq: 6,
            missing_seq_ranges: vec![],
            sales_stored: 8,
        }
    );
    assert_eq!(measures(&e, 0, D1, "EUR").sales_count, 8);
}

fn observed(highest_seq: i64, missing: Vec<[i64; 2]>, listed: &[Uuid]) -> TillObservation {
    TillObservation {
        sync: SyncView {
            highest_seq,
            contiguous_through_seq: 0,
            missing_seq_ranges: missing,
            sales_stored: 0,
            business_day: None,
        },
        days: Vec::new(),
        rows: Default::default(),
        listed: listed.iter().copied().collect(),
    }
}

/// A sale sent without an answer is held if its seq is, unless another
/// sale holds that seq too: then only the listing tells. One the server
/// lists as refused is refused. One never sent is still queued.
#[test]
fn presence_of_sales_sent_without_an_answer_follows_what_the_server_holds() {
    let unanswered = |seq| {
        with_fate(
            fact(seq, Kind::Sale, D1, "10:00", "EUR", 100),
            Fate::SentUnanswered,
        )
    };
    let sales = vec![
        fact(1, Kind::Sale, D1, "10:00", "EUR", 100),
        unanswered(2),
        unanswered(3),
        unanswered(4),
        // Seq 1 again (a restore), sent without an answer: twice.
        unanswered(1),
        with_fate(
            fact(1, Kind::Sale, D1, "10:00", "EUR", 100),
            Fate::SentUnanswered,
        ),
        with_fate(
            fact(5, Kind::Sale, D1, "10:00", "EUR", 100),
            Fate::NeverSent,
        ),
    ];
    let ids: Vec<Uuid> = sales.iter().map(|s| s.sale_id).collect();
    let fleet = fleet(vec![sales]);
    // Seq 3 is missing; seq 4 was refused (listed); the server lists only
    // the first of the two sales that reused seq 1.
    let views = vec![Ok(observed(4, vec![[3, 3]], &[ids[0], ids[4]]))];
    let ambiguous: Vec<Uuid> = ambiguous(&fleet.tills[0], &views[0].as_ref().unwrap().sync)
        .iter()
        .map(|s| s.sale_id)
        .collect();
    assert_eq!(ambiguous, [ids[4], ids[5]]);
    let presence = presence(&fleet, &views, &HashSet::from([ids[3]]));
    let held: HashSet<Uuid> = HashSet::from([ids[0], ids[1], ids[4]]);
    assert_eq!(presence.stored, held);
    assert_eq!(presence.refused, HashSet::from([ids[3]]));
    assert_eq!(
        (
            presence.never_sent,
            presence.still_queued,
            presence.unanswered_stored
        ),
        (1, 3, 2)
    );
}

/// A till the server could not be asked about: its sales sent without an
/// answer are taken as not held (the till counts as unverified anyway).
#[test]
fn without_an_answer_about_a_till_its_unanswered_sales_are_taken_as_not_held() {
    let sale = with_fate(
        fact(1, Kind::Sale, D1, "10:00", "EUR", 100),
        Fate::SentUnanswered,
    );
    let fleet = fleet(vec![vec![sale]]);
    let failed = vec![Err(Failure::Timeout)];
    let presence = presence(&fleet, &failed, &HashSet::new());
    assert!(presence.stored.is_empty());
    assert_eq!(presence.still_queued, 1);
}
