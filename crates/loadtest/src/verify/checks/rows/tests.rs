use super::*;
use crate::client::{CurrencyTotal, SplitView, TaxGroup, TotalsGroup};
use crate::verify::figures::Split;

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// What the server answers for `split`, member by member.
fn view(split: &Split) -> SplitView {
    SplitView {
        tax_minor: Some(split.tax_minor),
        item_sales_minor: Some(split.item_sales_minor),
        gift_card_sales_minor: Some(split.gift_card_sales_minor),
        tips_minor: Some(split.tips_minor),
        service_charges_minor: Some(split.service_charges_minor),
        rounding_minor: Some(split.rounding_minor),
        net_sales_minor: Some(split.net_sales_minor),
    }
}

/// A day of EUR receipts with something in every member.
const EUR_SPLIT: Split = Split {
    tax_minor: 120,
    item_sales_minor: 1000,
    gift_card_sales_minor: 2500,
    tips_minor: 150,
    service_charges_minor: 180,
    rounding_minor: -2,
    net_sales_minor: 1180,
};

fn expected_day() -> BTreeMap<String, DayFigures> {
    BTreeMap::from([
        (
            "CHF".to_owned(),
            DayFigures {
                sales_count: 1,
                net_minor: 700,
                split: Split::default(),
            },
        ),
        (
            "EUR".to_owned(),
            DayFigures {
                sales_count: 4,
                net_minor: 800,
                split: EUR_SPLIT,
            },
        ),
    ])
}

fn day(totals: &[(&str, i64, i64, SplitView)]) -> BusinessDay {
    BusinessDay {
        business_date: date(),
        sales_count: totals.iter().map(|t| t.1).sum(),
        totals: totals
            .iter()
            .map(|&(currency, sales_count, net_minor, split)| CurrencyTotal {
                currency: currency.into(),
                sales_count,
                net_minor,
                split,
            })
            .collect(),
    }
}

fn compare(stored: &[(&str, i64, i64, SplitView)]) -> Findings {
    let mut findings = Findings::default();
    findings.compare_day(Uuid::nil(), &expected_day(), &day(stored));
    findings
}

fn counts(f: &Findings) -> (u64, u64, u64) {
    (f.lost, f.duplicated, f.mismatched_totals)
}

fn chf() -> SplitView {
    view(&Split::default())
}

fn eur() -> SplitView {
    view(&EUR_SPLIT)
}

#[test]
fn matching_day_figures_find_nothing() {
    let findings = compare(&[("CHF", 1, 700, chf()), ("EUR", 4, 800, eur())]);
    assert_eq!(counts(&findings), (0, 0, 0));
    assert!(findings.discrepancies.is_empty());
}

#[test]
fn fewer_facts_are_lost_more_are_duplicated_and_nets_are_compared() {
    let both = |eur_count, eur_net| [("CHF", 1, 700, chf()), ("EUR", eur_count, eur_net, eur())];
    assert_eq!(counts(&compare(&both(3, -200))), (1, 0, 1));
    assert_eq!(counts(&compare(&both(5, 800))), (0, 1, 1));
    assert_eq!(compare(&[("EUR", 4, 800, eur())]).lost, 1);
    let extra_currency = compare(&[
        ("CHF", 1, 700, chf()),
        ("EUR", 4, 800, eur()),
        ("USD", 1, 5, chf()),
    ]);
    assert_eq!(extra_currency.duplicated, 1);
    assert_eq!(counts(&compare(&both(4, 801))), (0, 0, 1));
}

/// Each new member of the day check is compared; a member the server
/// leaves out differs too, and the line names it.
#[test]
fn every_member_of_the_day_check_is_compared() {
    let mut tips_off = eur();
    tips_off.tips_minor = Some(0);
    let findings = compare(&[("CHF", 1, 700, chf()), ("EUR", 4, 800, tips_off)]);
    assert_eq!(counts(&findings), (0, 0, 1));
    assert_eq!(
        findings.discrepancies[0].detail,
        "2026-11-20 EUR: expected 4 facts, server has 4; tips_minor expected 150, server 0"
    );
    let mut missing = eur();
    missing.net_sales_minor = None;
    missing.rounding_minor = Some(2);
    let findings = compare(&[("CHF", 1, 700, chf()), ("EUR", 4, 800, missing)]);
    let detail = &findings.discrepancies[0].detail;
    assert!(
        detail.ends_with(
            "rounding_minor expected -2, server 2, net_sales_minor expected 1180, server null"
        ),
        "{detail}"
    );
}

fn row(currency: &str, m: Measures) -> TotalsRow {
    TotalsRow {
        group: TotalsGroup {
            business_date: date(),
        },
        currency: currency.into(),
        sales_count: m.sales_count,
        refunds_count: m.refunds_count,
        voids_count: m.voids_count,
        gross_minor: m.gross_minor,
        refunds_minor: m.refunds_minor,
        discounts_minor: Some(m.discounts_minor),
        net_minor: m.net_minor(),
        split: view(&m.split),
    }
}

const EUR: Measures = Measures {
    sales_count: 3,
    refunds_count: 1,
    voids_count: 1,
    gross_minor: 3000,
    refunds_minor: 200,
    discounts_minor: 30,
    split: EUR_SPLIT,
};

fn compare_totals(rows: &[TotalsRow]) -> Findings {
    let expected = BTreeMap::from([((date(), "EUR".to_owned()), EUR)]);
    let mut findings = Findings::default();
    findings.compare_totals(Some(Uuid::nil()), &expected, rows);
    findings
}

#[test]
fn every_column_of_the_report_is_compared() {
    assert_eq!(compare_totals(&[row("EUR", EUR)]).mismatched_report_rows, 0);
    let mut off = row("EUR", EUR);
    off.split.tax_minor = Some(121);
    let findings = compare_totals(&[off]);
    assert_eq!(findings.mismatched_report_rows, 1);
    assert_eq!(
        findings.discrepancies[0].detail,
        "2026-11-20 EUR: tax_minor expected 120, server 121"
    );
    let mut wrong_net = row("EUR", EUR);
    wrong_net.net_minor += 1;
    assert_eq!(compare_totals(&[wrong_net]).mismatched_report_rows, 1);
    // Each of the members issue 24 added, wrong or left out.
    for column in 0..7 {
        let mut off = row("EUR", EUR);
        let members = [
            &mut off.split.tax_minor,
            &mut off.split.item_sales_minor,
            &mut off.split.gift_card_sales_minor,
            &mut off.split.tips_minor,
            &mut off.split.service_charges_minor,
            &mut off.split.rounding_minor,
            &mut off.split.net_sales_minor,
        ];
        *members.into_iter().nth(column).unwrap() = None;
        let findings = compare_totals(&[off]);
        assert_eq!(findings.mismatched_report_rows, 1, "column {column}");
        assert!(findings.discrepancies[0].detail.contains("server null"));
    }
    // A row left out, and a row not expected.
    assert_eq!(compare_totals(&[]).mismatched_report_rows, 1);
    let extra = row(
        "CHF",
        Measures {
            sales_count: 1,
            gross_minor: 5,
            ..Measures::default()
        },
    );
    assert_eq!(
        compare_totals(&[row("EUR", EUR), extra]).mismatched_report_rows,
        1
    );
}

fn tax_row(code: &str, rate_bp: i64, figures: TaxFigures) -> TaxRow {
    TaxRow {
        group: TaxGroup {
            tax_code: code.into(),
            rate_bp,
        },
        currency: "EUR".into(),
        sales_count: figures.sales_count,
        refunds_count: figures.refunds_count,
        voids_count: 0,
        tax_minor: Some(figures.tax_minor),
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

const DE_19: TaxFigures = TaxFigures {
    sales_count: 5,
    refunds_count: 1,
    tax_minor: 400,
};
const DE_7: TaxFigures = TaxFigures {
    sales_count: 3,
    refunds_count: 0,
    tax_minor: 70,
};

/// The rows of one day, DE-19 and DE-7, against `rows` answered for it.
fn compare_taxes(rows: &[TaxRow]) -> Findings {
    let key = |code: &str, rate| (date(), "EUR".to_owned(), code.to_owned(), rate);
    let expected = BTreeMap::from([(key("DE-19", 1900), DE_19), (key("DE-7", 700), DE_7)]);
    let mut findings = Findings::default();
    let answered = BTreeMap::from([(date(), rows.to_vec())]);
    findings.compare_taxes(Some(Uuid::nil()), &expected, &answered);
    findings
}

#[test]
fn every_tax_code_row_is_compared_and_leaves_the_rest_null() {
    let exact = [tax_row("DE-19", 1900, DE_19), tax_row("DE-7", 700, DE_7)];
    assert_eq!(compare_taxes(&exact).mismatched_tax_rows, 0);

    // Tax counted under the wrong code: two rows differ.
    let mut moved = exact.clone();
    moved[0].tax_minor = Some(390);
    moved[1].tax_minor = Some(80);
    let findings = compare_taxes(&moved);
    assert_eq!(findings.mismatched_tax_rows, 2);
    assert_eq!(
        findings.discrepancies[0].detail,
        "2026-11-20 EUR DE-19 at 1900 bp: tax_minor expected 400, server 390"
    );
    // The same code at another rate is another row.
    let findings = compare_taxes(&[tax_row("DE-19", 1600, DE_19), tax_row("DE-7", 700, DE_7)]);
    assert_eq!(findings.mismatched_tax_rows, 2);
    // Tax left unsplit, under no code.
    let findings = compare_taxes(&[tax_row("", 0, DE_19), tax_row("DE-7", 700, DE_7)]);
    assert_eq!(findings.mismatched_tax_rows, 2);
    assert!(
        (findings.discrepancies.iter())
            .any(|d| d.detail.starts_with("2026-11-20 EUR (no code) at 0 bp:")),
        "{:?}",
        findings.discrepancies
    );
    // A money member that is not split by code must be null.
    let mut gross = exact.clone();
    gross[1].gross_minor = Some(1000);
    let findings = compare_taxes(&gross);
    assert_eq!(findings.mismatched_tax_rows, 1);
    assert_eq!(
        findings.discrepancies[0].detail,
        "2026-11-20 EUR DE-7 at 700 bp: gross_minor expected null, server 1000"
    );
}

/// A tax row belongs to its day, counts no voids, and is due whenever its
/// tax is not zero, even when its sales and voids of other tills' sales
/// leave it no count (a server that leaves such a row out loses its tax).
#[test]
fn a_tax_row_is_its_days_counts_no_voids_and_is_due_while_it_holds_tax() {
    let exact = [tax_row("DE-19", 1900, DE_19), tax_row("DE-7", 700, DE_7)];
    let mut voided = exact.clone();
    voided[0].voids_count = 1;
    let findings = compare_taxes(&voided);
    assert_eq!(findings.mismatched_tax_rows, 1);
    assert!(
        (findings.discrepancies[0].detail).ends_with("voids_count expected 0, server 1"),
        "{:?}",
        findings.discrepancies
    );

    let key = |code: &str, rate| (date(), "EUR".to_owned(), code.to_owned(), rate);
    let expected = BTreeMap::from([(key("DE-19", 1900), DE_19), (key("DE-7", 700), DE_7)]);
    let next_day = date().succ_opt().unwrap();
    let mut findings = Findings::default();
    let answered = BTreeMap::from([(next_day, exact.to_vec())]);
    findings.compare_taxes(None, &expected, &answered);
    assert_eq!(findings.mismatched_tax_rows, 4, "two missing, two extra");
    assert!(
        findings
            .discrepancies
            .iter()
            .all(|d| d.terminal_id.is_none())
    );

    let no_count = TaxFigures {
        sales_count: 0,
        refunds_count: 0,
        tax_minor: -50,
    };
    let expected = BTreeMap::from([(key("DE-19", 1900), DE_19), (key("DE-7", 700), no_count)]);
    let mut findings = Findings::default();
    let answered = BTreeMap::from([(date(), vec![exact[0].clone()])]);
    findings.compare_taxes(Some(Uuid::nil()), &expected, &answered);
    assert_eq!(findings.mismatched_tax_rows, 1);
    assert_eq!(
        findings.discrepancies[0].detail,
        "2026-11-20 EUR DE-7 at 700 bp: tax_minor expected -50, server 0"
    );
}
