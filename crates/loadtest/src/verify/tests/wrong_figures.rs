//! The verdict against a server that holds every sale and gets one figure
//! of the receipt's money wrong, by one minor unit: wherever that figure
//! is (a till's day check, its day row, the store's day row, a tax row of
//! either), the verdict fails, on that figure alone.

use super::*;

/// Every member of the split, to be made wrong one at a time.
fn members(split: &mut SplitView) -> [(&'static str, &mut Option<i64>); 7] {
    [
        ("tax_minor", &mut split.tax_minor),
        ("item_sales_minor", &mut split.item_sales_minor),
        ("gift_card_sales_minor", &mut split.gift_card_sales_minor),
        ("tips_minor", &mut split.tips_minor),
        ("service_charges_minor", &mut split.service_charges_minor),
        ("rounding_minor", &mut split.rounding_minor),
        ("net_sales_minor", &mut split.net_sales_minor),
    ]
}

/// Where a wrong figure can be in what the server says.
#[derive(Debug, Clone, Copy)]
enum Place {
    DayCheck,
    TillRow,
    StoreRow,
}

impl Place {
    fn split(self, observation: &mut Observation) -> &mut SplitView {
        let till = observation.tills[0].as_mut().unwrap();
        match self {
            Place::DayCheck => &mut till.days[0].totals[0].split,
            Place::TillRow => &mut till.rows.totals[0].split,
            Place::StoreRow => &mut observation.store.as_mut().unwrap().totals[0].split,
        }
    }
}

fn two_sales() -> Fleet {
    fleet(vec![vec![
        sale(1, Fate::Acknowledged),
        sale(2, Fate::Acknowledged),
    ]])
}

#[test]
fn the_right_figures_pass() {
    let verdict = judge(&two_sales(), &server_holding(2));
    assert!(verdict.passed(), "{verdict:?}");
}

#[test]
fn one_split_member_off_by_one_anywhere_fails_the_verdict() {
    let fleet = two_sales();
    for place in [Place::DayCheck, Place::TillRow, Place::StoreRow] {
        for member in 0..7 {
            let mut observation = server_holding(2);
            let (name, figure) = members(place.split(&mut observation))
                .into_iter()
                .nth(member)
                .unwrap();
            let right = figure.unwrap();
            *figure = Some(right + 1);
            let verdict = judge(&fleet, &observation);
            let at = format!("{name} in the {place:?}");
            assert!(!verdict.passed(), "{at}");
            let (rows, day_checks) = match place {
                Place::DayCheck => (0, 1),
                Place::TillRow | Place::StoreRow => (1, 0),
            };
            assert_eq!(verdict.mismatched_report_rows, rows, "{at}");
            assert_eq!(verdict.mismatched_totals, day_checks, "{at}");
            assert_eq!(
                (
                    verdict.lost,
                    verdict.duplicated,
                    verdict.mismatched_tax_rows
                ),
                (0, 0, 0),
                "{at}"
            );
            let [discrepancy] = verdict.discrepancies.as_slice() else {
                panic!("one discrepancy for {at}: {:?}", verdict.discrepancies);
            };
            let wrong = format!("{name} expected {right}, server {}", right + 1);
            assert!(discrepancy.detail.ends_with(&wrong), "{discrepancy:?}");
            let on_the_till = !matches!(place, Place::StoreRow);
            assert_eq!(discrepancy.terminal_id.is_some(), on_the_till, "{at}");
        }
    }
}

#[test]
fn tax_off_by_one_under_either_code_of_the_till_or_the_store_fails_the_verdict() {
    let fleet = two_sales();
    for of_store in [false, true] {
        for code in 0..2 {
            let mut observation = server_holding(2);
            let rows = if of_store {
                observation.store.as_mut().unwrap()
            } else {
                &mut observation.tills[0].as_mut().unwrap().rows
            };
            let row = &mut rows.taxes.get_mut(&date()).unwrap()[code];
            row.tax_minor = row.tax_minor.map(|tax| tax + 1);
            let verdict = judge(&fleet, &observation);
            let at = format!("code {code}, store {of_store}");
            assert!(!verdict.passed(), "{at}");
            assert_eq!(verdict.mismatched_tax_rows, 1, "{at}");
            assert_eq!(
                (verdict.mismatched_report_rows, verdict.mismatched_totals),
                (0, 0),
                "{at}"
            );
            assert_eq!(verdict.discrepancies[0].terminal_id.is_none(), of_store);
        }
    }
}

/// Tax moved from one code to the other leaves every total right and two
/// tax rows wrong.
#[test]
fn tax_counted_under_the_wrong_code_fails_the_verdict() {
    let mut observation = server_holding(2);
    let taxes = observation.store.as_mut().unwrap().taxes.get_mut(&date());
    let [food, standard] = taxes.unwrap().as_mut_slice() else {
        panic!("two codes");
    };
    food.tax_minor = food.tax_minor.map(|tax| tax + 5);
    standard.tax_minor = standard.tax_minor.map(|tax| tax - 5);
    let verdict = judge(&two_sales(), &observation);
    assert!(!verdict.passed());
    assert_eq!(verdict.mismatched_tax_rows, 2);
    assert_eq!(verdict.mismatched_report_rows, 0);
}
