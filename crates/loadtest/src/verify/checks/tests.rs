use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::args::AdminToken;
use crate::generator::{Kind, Money};
use crate::verify::{ExpectedSale, Retirement, TerminalToken};

#[test]
fn the_sync_state_must_be_the_expected_one() {
    let wanted = SyncExpected {
        highest_seq: 5,
        contiguous_through_seq: 5,
        missing_seq_ranges: vec![],
        sales_stored: 5,
    };
    let view =
        |highest_seq, contiguous_through_seq, missing: Vec<[i64; 2]>, sales_stored| SyncView {
            highest_seq,
            contiguous_through_seq,
            missing_seq_ranges: missing,
            sales_stored,
            business_day: None,
        };
    let mut good = Findings::default();
    good.check_sync_state(Uuid::nil(), &wanted, &view(5, 5, vec![], 5));
    assert!(!good.sync_state_mismatch);
    for bad in [
        view(4, 4, vec![], 4),
        view(5, 1, vec![[2, 2]], 4),
        view(5, 5, vec![], 6),
    ] {
        let mut findings = Findings::default();
        findings.check_sync_state(Uuid::nil(), &wanted, &bad);
        assert!(findings.sync_state_mismatch, "{bad:?}");
    }
}

fn listed(kind: &str, status: &str, ids: &[Uuid]) -> ListedException {
    ListedException {
        kind: kind.into(),
        status: status.into(),
        sale_ids: ids.to_vec(),
        seq: None,
        code: None,
    }
}

#[test]
fn the_exception_list_must_hold_exactly_the_expected_ones() {
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut pair = vec![a, b];
    pair.sort_unstable();
    let expected = BTreeSet::from([
        ("seq_reused".to_owned(), pair),
        ("refused".to_owned(), vec![c]),
    ]);
    let both = [
        listed("seq_reused", "open", &[b, a]),
        listed("refused", "open", &[c]),
    ];
    let exact = compare_exceptions(&expected, &both);
    assert_eq!(
        (exact.exceptions_missing, exact.exceptions_unexpected),
        (0, 0)
    );

    // A reference resolved by the server itself once its sale came is fine.
    let mut with_resolved = both.to_vec();
    with_resolved.push(listed("unmatched_reference", "resolved", &[Uuid::new_v4()]));
    assert_eq!(
        compare_exceptions(&expected, &with_resolved).exceptions_unexpected,
        0
    );

    let missing = compare_exceptions(&expected, &both[..1]);
    assert_eq!(
        (missing.exceptions_missing, missing.exceptions_unexpected),
        (1, 0)
    );
    let mut extra = both.to_vec();
    extra.push(listed("unmatched_reference", "open", &[Uuid::new_v4()]));
    extra.push(listed("refused", "open", &[c]));
    extra.push(listed("void_mismatch", "resolved", &[a, c]));
    let unexpected = compare_exceptions(&expected, &extra);
    assert_eq!(
        (
            unexpected.exceptions_missing,
            unexpected.exceptions_unexpected
        ),
        (0, 3)
    );
    // Listed under another set of sales: one missing, one unexpected.
    let wrong_ids = [
        listed("seq_reused", "open", &[a]),
        listed("refused", "open", &[c]),
    ];
    let wrong = compare_exceptions(&expected, &wrong_ids);
    assert_eq!(
        (wrong.exceptions_missing, wrong.exceptions_unexpected),
        (1, 1)
    );
}

fn sale_at(seq: i64, at: &str, fate: Fate) -> ExpectedSale {
    ExpectedSale {
        sale_id: Uuid::new_v4(),
        seq,
        kind: Kind::Sale,
        currency: "EUR",
        occurred_at: DateTime::parse_from_rfc3339(at).unwrap(),
        business_date: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        money: Money {
            total_minor: 100,
            tax_minor: 10,
            item_sales_minor: 100,
            ..Money::default()
        },
        refers_to_sale_id: None,
        fate,
        first_sent: None,
        first_stored: None,
    }
}

fn retired_fleet(sales: Vec<ExpectedSale>, retired_at: Result<DateTime<Utc>, String>) -> Fleet {
    Fleet {
        store_id: Uuid::new_v4(),
        admin: AdminToken::from_str("tsa").unwrap(),
        tills: vec![ExpectedTill {
            number: 0,
            terminal_id: Uuid::new_v4(),
            token: TerminalToken::new("t".into()),
            sales,
            link_lost: true,
            restored_by: None,
            retirement: Some(Retirement {
                retired_at,
                queued: 0,
                answered: tokio::time::Instant::now(),
            }),
            voids_pushed_ahead: 0,
        }],
    }
}

/// Only a sale made after its till's retirement may be refused (as
/// `terminal_retired`); every sale made before must be taken.
#[test]
fn refusals_are_expected_only_for_sales_made_after_the_retirement() {
    let retired = || Fate::Refused {
        code: "terminal_retired".into(),
    };
    let sales = vec![
        sale_at(1, "2026-11-20T10:00:00+01:00", Fate::Acknowledged),
        sale_at(2, "2026-11-20T10:00:02+01:00", retired()),
        sale_at(3, "2026-11-20T09:59:59+01:00", retired()),
        sale_at(4, "2026-11-20T10:00:03+01:00", Fate::Acknowledged),
        sale_at(
            5,
            "2026-11-20T10:00:04+01:00",
            Fate::Refused {
                code: "invalid_line".into(),
            },
        ),
    ];
    let mut presence = Presence::default();
    for (i, sale) in sales.iter().enumerate() {
        if matches!(sale.fate, Fate::Acknowledged) {
            presence.stored.insert(sale.sale_id);
        } else if i > 0 {
            presence.refused.insert(sale.sale_id);
        }
    }
    let at = DateTime::parse_from_rfc3339("2026-11-20T09:00:01Z")
        .unwrap()
        .to_utc();
    let findings = refusals(&retired_fleet(sales, Ok(at)), &presence);
    // Seq 3 (before) and seq 5 (not a retirement) are unexpected refusals;
    // seq 4 was taken after the retirement.
    assert_eq!(
        findings.refused_unexpectedly, 2,
        "{:?}",
        findings.discrepancies
    );
    assert_eq!(findings.accepted_after_retirement, 1);
    assert_eq!(findings.incidents_failed, 0);

    let failed = refusals(
        &retired_fleet(vec![], Err("HTTP 404".into())),
        &Presence::default(),
    );
    assert_eq!(failed.incidents_failed, 1);
}
