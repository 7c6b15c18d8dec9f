use std::str::FromStr;

use super::*;
use crate::client::{
    BusinessDay, CurrencyTotal, Failure, ListedException, SyncView, TotalsGroup, TotalsRow,
};
use observe::TillObservation;

fn fleet(tills: Vec<Vec<ExpectedSale>>) -> Fleet {
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

fn sale(seq: i64, fate: Fate) -> ExpectedSale {
    ExpectedSale {
        sale_id: Uuid::new_v4(),
        seq,
        kind: Kind::Sale,
        currency: "EUR",
        occurred_at: DateTime::parse_from_rfc3339("2026-11-20T10:00:00+01:00").unwrap(),
        business_date: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        total_minor: 1000,
        tax_minor: 100,
        discount_minor: 0,
        refers_to_sale_id: None,
        fate,
        first_sent: None,
        first_stored: None,
    }
}

/// What a server holding the first `held` seqs of a one-day till of plain
/// EUR sales of 1000 says about it.
fn server_holding(sales: &[ExpectedSale], held: i64) -> TillObservation {
    let date = sales[0].business_date;
    TillObservation {
        sync: SyncView {
            highest_seq: held,
            contiguous_through_seq: held,
            missing_seq_ranges: vec![],
            sales_stored: held,
            business_day: None,
        },
        days: vec![BusinessDay {
            business_date: date,
            sales_count: held,
            totals: vec![CurrencyTotal {
                currency: "EUR".into(),
                sales_count: held,
                net_minor: 1000 * held,
            }],
        }],
        totals: vec![TotalsRow {
            group: TotalsGroup {
                business_date: date,
            },
            currency: "EUR".into(),
            sales_count: held,
            refunds_count: 0,
            voids_count: 0,
            gross_minor: 1000 * held,
            refunds_minor: 0,
            discounts_minor: Some(0),
            tax_minor: Some(100 * held),
            net_minor: 1000 * held,
        }],
        listed: Default::default(),
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
    let observed = server_holding(&sales, 2);
    let fleet = fleet(vec![sales]);
    let observation = Observation {
        exceptions: Ok(vec![]),
        tills: vec![Ok(observed)],
    };
    let verdict = judge(&fleet, &observation);
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

/// The same run where the server dropped an acknowledged sale: lost.
#[test]
fn an_acknowledged_sale_the_server_does_not_hold_is_lost() {
    let sales = vec![sale(1, Fate::Acknowledged), sale(2, Fate::Acknowledged)];
    let observed = server_holding(&sales, 1);
    let fleet = fleet(vec![sales]);
    let observation = Observation {
        exceptions: Ok(vec![]),
        tills: vec![Ok(observed)],
    };
    let verdict = judge(&fleet, &observation);
    assert!(!verdict.passed());
    assert_eq!((verdict.lost, verdict.still_queued), (1, 0));
    assert_eq!(verdict.sync_state_mismatches, 1);
    assert_eq!(verdict.mismatched_report_rows, 1);
}

#[test]
fn an_unreadable_exception_list_or_till_fails_the_verdict() {
    let sales = vec![sale(1, Fate::Acknowledged)];
    let observed = server_holding(&sales, 1);
    let fleet = fleet(vec![sales, vec![]]);
    let observation = Observation {
        exceptions: Err(Failure::Timeout),
        tills: vec![Ok(observed), Err(Failure::Connection)],
    };
    let verdict = judge(&fleet, &observation);
    assert!(!verdict.passed());
    assert!(verdict.exceptions_unverified);
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
        tills: vec![
            Ok(server_holding(&fleet.tills[0].sales, 1)),
            Ok(server_holding(&[sale(1, Fate::NeverSent)], 0)),
        ],
    };
    assert_eq!(judge(&fleet, &unexpected).exceptions_unexpected, 1);
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
    };
    let started = std::time::Instant::now();
    let verification = verify(&api, fleet, limits).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(verification.unverified_tills, 3);
    assert!(!verification.passed());
}
