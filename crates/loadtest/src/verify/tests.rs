use std::str::FromStr;

use super::*;
use crate::client::{
    BusinessDay, CurrencyTotal, Failure, ListedException, SplitView, SyncView, TaxGroup, TaxRow,
    TotalsGroup, TotalsRow,
};
use crate::generator::TaxAmount;
use observe::{ObservedRows, TillObservation};

mod wrong_figures;

pub(super) fn fleet(tills: Vec<Vec<ExpectedSale>>) -> Fleet {
    Fleet {
        store_id: Uuid::new_v4(),
        admin: AdminToken::from_str("tsa").unwrap(),
        tills: tills
            .into_iter()
            .enumerate()
            .map(|(number, sales)| ExpectedTill {
                number,
                terminal_id: Uuid::new_v4(),
                token: TerminalToken::new("t".into()),
                sales,
                link_lost: false,
                restored_by: None,
                retirement: None,
                voids_pushed_ahead: 0,
            })
            .collect(),
    }
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// A US receipt with something in every member: 15.00 at US-STD (1.54 tax
/// on top) and 5.00 at US-FOOD (0.11), a 25.00 gift card, a 3.60 service
/// charge, a 3.00 tip and (for the sake of the test) 2 cents of rounding
/// off: 53.23 in all.
fn sale(seq: i64, fate: Fate) -> ExpectedSale {
    ExpectedSale {
        sale_id: Uuid::new_v4(),
        seq,
        kind: Kind::Sale,
        currency: "EUR",
        occurred_at: DateTime::parse_from_rfc3339("2026-11-20T10:00:00+01:00").unwrap(),
        business_date: date(),
        money: Money {
            total_minor: 5323,
            tax_minor: 165,
            tax_included: false,
            item_sales_minor: 2000,
            gift_card_sales_minor: 2500,
            tip_minor: 300,
            service_charge_minor: 360,
            rounding_minor: -2,
            taxes: vec![
                TaxAmount {
                    code: "US-STD",
                    rate_bp: 1025,
                    amount_minor: 154,
                },
                TaxAmount {
                    code: "US-FOOD",
                    rate_bp: 225,
                    amount_minor: 11,
                },
            ],
            ..Money::default()
        },
        refers_to_sale_id: None,
        fate,
        first_sent: None,
        first_stored: None,
    }
}

/// The split of `held` such receipts, as the server answers it: net sales
/// are the items and the service charge (the tax was on top).
fn split(held: i64) -> SplitView {
    SplitView {
        tax_minor: Some(165 * held),
        item_sales_minor: Some(2000 * held),
        gift_card_sales_minor: Some(2500 * held),
        tips_minor: Some(300 * held),
        service_charges_minor: Some(360 * held),
        rounding_minor: Some(-2 * held),
        net_sales_minor: Some(2360 * held),
    }
}

fn tax_row(code: &str, rate_bp: i64, sales_count: i64, tax_minor: i64) -> TaxRow {
    TaxRow {
        group: TaxGroup {
            tax_code: code.into(),
            rate_bp,
        },
        currency: "EUR".into(),
        sales_count,
        refunds_count: 0,
        voids_count: 0,
        tax_minor: Some(tax_minor),
        gross_minor: None,
        refunds_minor: None,
        discounts_minor: None,
        net_minor: None,
        item_sales_minor: None,
        gift_card_sales_minor: None,
        tips_minor: None,
        service_charges_minor: None,
        rounding_minor: None,
        net_sales_minor: None,
    }
}

/// The report rows of `held` such receipts on one day (the server leaves
/// out rows of nothing).
fn rows_holding(held: i64) -> ObservedRows {
    if held == 0 {
        return ObservedRows {
            totals: vec![],
            taxes: [(date(), vec![])].into(),
        };
    }
    let totals = TotalsRow {
        group: TotalsGroup {
            business_date: date(),
        },
        currency: "EUR".into(),
        sales_count: held,
        refunds_count: 0,
        voids_count: 0,
        gross_minor: 5323 * held,
        refunds_minor: 0,
        discounts_minor: Some(0),
        net_minor: 5323 * held,
        split: split(held),
    };
    let taxes = vec![
        tax_row("US-FOOD", 225, held, 11 * held),
        tax_row("US-STD", 1025, held, 154 * held),
    ];
    ObservedRows {
        totals: vec![totals],
        taxes: [(date(), taxes)].into(),
    }
}

/// What a server holding the first `held` seqs of a one-day till of such
/// receipts says about the till.
fn till_holding(held: i64) -> TillObservation {
    TillObservation {
        sync: SyncView {
            highest_seq: held,
            contiguous_through_seq: held,
            missing_seq_ranges: vec![],
            sales_stored: held,
            business_day: None,
        },
        days: vec![BusinessDay {
            business_date: date(),
            sales_count: held,
            totals: vec![CurrencyTotal {
                currency: "EUR".into(),
                sales_count: held,
                net_minor: 5323 * held,
                split: split(held),
            }],
        }],
        rows: rows_holding(held),
        listed: Default::default(),
    }
}

/// A store of one till whose first `held` seqs the server holds.
fn server_holding(held: i64) -> Observation {
    Observation {
        exceptions: Ok(vec![]),
        tills: vec![Ok(till_holding(held))],
        store: Ok(rows_holding(held)),
    }
}

/// The finding, in small: the drain gave up with sales never sent
/// and sales refused for load. The server holds what it acknowledged, so
/// nothing is lost: the verdict passes and says what is still queued.
#[test]
fn a_drain_that_gave_up_is_still_queued_not_lost() {
    let sales = vec![
        sale(1, Fate::Acknowledged),
        sale(2, Fate::Acknowledged),
        sale(3, Fate::SentUnanswered),
        sale(4, Fate::NeverSent),
        sale(5, Fate::NeverSent),
    ];
    let fleet = fleet(vec![sales]);
    let verdict = judge(&fleet, &server_holding(2));
    assert!(verdict.passed(), "{verdict:?}");
    assert_eq!(
        (
            verdict.lost,
            verdict.still_queued,
            verdict.still_queued_never_sent
        ),
        (0, 3, 2)
    );
}

/// The same run where the server dropped an acknowledged sale: lost, and
/// missing from the till's figures and the store's.
#[test]
fn an_acknowledged_sale_the_server_does_not_hold_is_lost() {
    let sales = vec![sale(1, Fate::Acknowledged), sale(2, Fate::Acknowledged)];
    let fleet = fleet(vec![sales]);
    let verdict = judge(&fleet, &server_holding(1));
    assert!(!verdict.passed());
    assert_eq!((verdict.lost, verdict.still_queued), (1, 0));
    assert_eq!(verdict.sync_state_mismatches, 1);
    assert_eq!(
        verdict.mismatched_report_rows, 2,
        "the till's and the store's"
    );
    assert_eq!(verdict.mismatched_tax_rows, 4, "two codes, till and store");
}

#[test]
fn an_unreadable_exception_list_till_or_store_fails_the_verdict() {
    let sales = vec![sale(1, Fate::Acknowledged)];
    let fleet = fleet(vec![sales, vec![]]);
    let observation = Observation {
        exceptions: Err(Failure::Timeout),
        tills: vec![Ok(till_holding(1)), Err(Failure::Connection)],
        store: Err(Failure::Timeout),
    };
    let verdict = judge(&fleet, &observation);
    assert!(!verdict.passed());
    assert!(verdict.exceptions_unverified);
    assert!(verdict.store_rows_unverified);
    assert_eq!((verdict.tills_checked, verdict.unverified_tills), (1, 1));
    let listed = |kind: &str| ListedException {
        kind: kind.into(),
        status: "open".into(),
        sale_ids: vec![Uuid::new_v4()],
        seq: None,
        code: None,
    };
    let unexpected = Observation {
        exceptions: Ok(vec![listed("over_refund")]),
        tills: vec![Ok(till_holding(1)), Ok(till_holding(0))],
        store: Ok(rows_holding(1)),
    };
    let verdict = judge(&fleet, &unexpected);
    assert_eq!(verdict.exceptions_unexpected, 1);
    assert!(!verdict.store_rows_unverified);
    let store_unread = Observation {
        exceptions: Ok(vec![]),
        tills: vec![Ok(till_holding(1)), Ok(till_holding(0))],
        store: Err(Failure::Connection),
    };
    let verdict = judge(&fleet, &store_unread);
    assert!(!verdict.passed());
    assert!(verdict.store_rows_unverified);
}

/// A server that accepts connections and never answers: verification
/// still ends, at its timeout, and says so.
#[tokio::test]
async fn verification_ends_at_its_timeout_with_the_tills_unverified() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let api = Api::new(&url.parse().unwrap(), Duration::from_secs(30), 2).unwrap();
    let fleet = Arc::new(fleet(vec![vec![], vec![], vec![]]));
    let limits = VerifyLimits {
        backoff_cap: Duration::from_millis(10),
        settle: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        concurrency: 8,
    };
    let started = std::time::Instant::now();
    let verification = verify(&api, fleet, limits).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(verification.unverified_tills, 3);
    assert!(verification.store_rows_unverified);
    assert!(!verification.passed());
}
