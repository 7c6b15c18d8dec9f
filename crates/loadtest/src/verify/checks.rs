//! The checks that compare one till's journal with what the server
//! reports. Pure: the caller fetches the server's figures. A check by sale
//! id (once the API lists sales) belongs here as one more method of
//! [`Findings`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDate;
use uuid::Uuid;

use super::{Discrepancy, ExpectedSale, ExpectedTill};
use crate::client::{BusinessDay, SyncView};
use crate::generator::Kind;

/// What the checks found about one till.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub lost: u64,
    pub duplicated: u64,
    pub mismatched_totals: u64,
    pub sync_state_mismatch: bool,
    pub discrepancies: Vec<Discrepancy>,
}

/// Count and net of a group of sales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Figures {
    sales_count: i64,
    net_minor: i64,
}

/// Per business date and currency, what the journal says the server must
/// hold, with the report definitions: a sale adds its total to net, a refund
/// subtracts it, a void adds nothing and neither does the sale it voids;
/// every row counts in `sales_count`.
pub(super) fn expected_days(
    sales: &[ExpectedSale],
) -> BTreeMap<NaiveDate, BTreeMap<&'static str, Figures>> {
    let voided: HashSet<Uuid> = sales
        .iter()
        .filter(|s| s.kind == Kind::Void)
        .filter_map(|s| s.refers_to_sale_id)
        .collect();
    let mut days: BTreeMap<NaiveDate, BTreeMap<&'static str, Figures>> = BTreeMap::new();
    for sale in sales {
        let figures = days
            .entry(sale.business_date)
            .or_default()
            .entry(sale.currency)
            .or_default();
        figures.sales_count += 1;
        figures.net_minor += match sale.kind {
            Kind::Sale if voided.contains(&sale.sale_id) => 0,
            Kind::Sale => sale.total_minor,
            Kind::Refund => -sale.total_minor,
            Kind::Void => 0,
        };
    }
    days
}

impl Findings {
    pub(super) fn check_sync_state(&mut self, till: &ExpectedTill, view: &SyncView) {
        let last_seq = till.sales.last().map_or(0, |s| s.seq);
        let generated = till.sales.len() as i64;
        let agrees = view.highest_seq == last_seq
            && view.contiguous_through_seq == last_seq
            && view.missing_seq_ranges.is_empty()
            && view.sales_stored == generated;
        if !agrees {
            self.sync_state_mismatch = true;
            self.discrepancies.push(Discrepancy {
                terminal_id: till.terminal_id,
                check: "sync_state",
                detail: format!(
                    "expected highest and contiguous seq {last_seq} and {generated} stored, \
                     server has highest {}, contiguous {}, {} stored, missing {:?}",
                    view.highest_seq,
                    view.contiguous_through_seq,
                    view.sales_stored,
                    view.missing_seq_ranges
                ),
            });
        }
    }

    pub(super) fn compare_day(
        &mut self,
        terminal_id: Uuid,
        expected: &BTreeMap<&'static str, Figures>,
        day: &BusinessDay,
    ) {
        let stored: BTreeMap<&str, Figures> = day
            .totals
            .iter()
            .map(|t| {
                let figures = Figures {
                    sales_count: t.sales_count,
                    net_minor: t.net_minor,
                };
                (t.currency.as_str(), figures)
            })
            .collect();
        let currencies: BTreeSet<&str> = expected
            .keys()
            .copied()
            .chain(stored.keys().copied())
            .collect();
        for currency in currencies {
            let want = expected.get(currency).copied().unwrap_or_default();
            let have = stored.get(currency).copied().unwrap_or_default();
            if want == have {
                continue;
            }
            let difference = have.sales_count - want.sales_count;
            if difference < 0 {
                self.lost += difference.unsigned_abs();
            } else {
                self.duplicated += difference.unsigned_abs();
            }
            if want.net_minor != have.net_minor {
                self.mismatched_totals += 1;
            }
            self.discrepancies.push(Discrepancy {
                terminal_id,
                check: "business_day",
                detail: format!(
                    "{} {currency}: expected {} sales with net {}, server has {} with net {}",
                    day.business_date,
                    want.sales_count,
                    want.net_minor,
                    have.sales_count,
                    have.net_minor
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::CurrencyTotal;
    use crate::verify::TerminalToken;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
    }

    fn sale(seq: i64, kind: Kind, currency: &'static str, total: i64) -> ExpectedSale {
        ExpectedSale {
            sale_id: Uuid::new_v4(),
            seq,
            kind,
            currency,
            business_date: date(),
            total_minor: total,
            refers_to_sale_id: None,
        }
    }

    fn day(totals: &[(&str, i64, i64)]) -> BusinessDay {
        BusinessDay {
            business_date: date(),
            sales_count: totals.iter().map(|t| t.1).sum(),
            totals: totals
                .iter()
                .map(|&(currency, sales_count, net_minor)| CurrencyTotal {
                    currency: currency.into(),
                    sales_count,
                    net_minor,
                })
                .collect(),
        }
    }

    fn journal() -> Vec<ExpectedSale> {
        let kept = sale(1, Kind::Sale, "EUR", 1000);
        let voided = sale(2, Kind::Sale, "EUR", 500);
        let mut void = sale(3, Kind::Void, "EUR", 500);
        void.refers_to_sale_id = Some(voided.sale_id);
        let refund = sale(4, Kind::Refund, "EUR", 200);
        let foreign = sale(5, Kind::Sale, "CHF", 700);
        vec![kept, voided, void, refund, foreign]
    }

    fn compare(stored: &[(&str, i64, i64)]) -> Findings {
        let mut findings = Findings::default();
        let expected = expected_days(&journal());
        findings.compare_day(Uuid::nil(), &expected[&date()], &day(stored));
        findings
    }

    #[test]
    fn voids_and_voided_sales_count_as_rows_but_not_in_net() {
        let days = expected_days(&journal());
        let eur = days[&date()]["EUR"];
        assert_eq!(
            eur,
            Figures {
                sales_count: 4,
                net_minor: 800
            }
        );
        assert_eq!(days[&date()]["CHF"].net_minor, 700);
    }

    #[test]
    fn matching_figures_find_nothing() {
        let findings = compare(&[("CHF", 1, 700), ("EUR", 4, 800)]);
        assert_eq!(
            (
                findings.lost,
                findings.duplicated,
                findings.mismatched_totals
            ),
            (0, 0, 0)
        );
        assert!(findings.discrepancies.is_empty());
    }

    #[test]
    fn fewer_rows_are_lost_more_rows_are_duplicated_and_nets_are_compared() {
        let lost = compare(&[("CHF", 1, 700), ("EUR", 3, -200)]);
        assert_eq!(
            (lost.lost, lost.duplicated, lost.mismatched_totals),
            (1, 0, 1)
        );
        let doubled = compare(&[("CHF", 2, 1400), ("EUR", 4, 800)]);
        assert_eq!(
            (doubled.lost, doubled.duplicated, doubled.mismatched_totals),
            (0, 1, 1)
        );
        let missing_currency = compare(&[("EUR", 4, 800)]);
        assert_eq!(missing_currency.lost, 1);
        let extra_currency = compare(&[("CHF", 1, 700), ("EUR", 4, 800), ("USD", 1, 5)]);
        assert_eq!(extra_currency.duplicated, 1);
        let wrong_net = compare(&[("CHF", 1, 700), ("EUR", 4, 801)]);
        assert_eq!(
            (
                wrong_net.lost,
                wrong_net.duplicated,
                wrong_net.mismatched_totals
            ),
            (0, 0, 1)
        );
    }

    #[test]
    fn sync_counters_must_match_the_journal() {
        let till = ExpectedTill {
            terminal_id: Uuid::nil(),
            token: TerminalToken::new("t".into()),
            sales: journal(),
        };
        let view = |highest_seq, missing: Vec<[i64; 2]>, sales_stored| SyncView {
            highest_seq,
            contiguous_through_seq: highest_seq,
            missing_seq_ranges: missing,
            sales_stored,
            business_day: None,
        };
        let mut good = Findings::default();
        good.check_sync_state(&till, &view(5, vec![], 5));
        assert!(!good.sync_state_mismatch);
        for bad_view in [
            view(4, vec![], 4),
            view(5, vec![[2, 2]], 4),
            view(5, vec![], 6),
        ] {
            let mut bad = Findings::default();
            bad.check_sync_state(&till, &bad_view);
            assert!(bad.sync_state_mismatch, "{bad_view:?}");
        }
    }
}
