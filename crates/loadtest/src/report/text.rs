//! The report as a summary for people. The verdict line says PASS or FAIL
//! on what could be verified; a drain that gave up is said apart from it
//! ("still queued on tills"), since those sales never reached the server.

use std::fmt;

use super::{Incidents, Report, Verdict};
use crate::stats::Percentiles;
use crate::verify::Verification;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(
            f,
            "tillsync loadtest against {}: {} tills, {:.0}s at {} sales/s offered ({} arrivals), batches of up to {}, seed {}",
            s.url,
            s.terminals,
            s.duration_s,
            s.offered_per_s,
            s.arrivals.as_str(),
            s.batch_size,
            s.seed
        )?;
        let sales = &self.sales;
        writeln!(
            f,
            "  sales      {} generated ({:.1}/s), {} acknowledged during the load ({:.1}/s achieved), {} in all",
            sales.generated,
            sales.generated_per_s,
            sales.acknowledged_during_load,
            sales.achieved_per_s,
            sales.acknowledged
        )?;
        let requests = &self.requests;
        let sync_failures: u64 = requests.sync_failures.values().sum();
        writeln!(
            f,
            "  requests   {} batch pushes, {} retries, {} sales resent after /v1/sync, {} failed sync calls{}",
            requests.batches_sent,
            requests.retries,
            sales.resent,
            sync_failures,
            buckets(&requests.sync_failures, " (", ")")
        )?;
        writeln!(
            f,
            "  statuses   {}",
            buckets(&requests.status_counts, "", "")
        )?;
        if !sales.rejected.is_empty() || sales.retried_later > 0 {
            writeln!(
                f,
                "  refused    for good: {}; for now and queued again: {}",
                buckets(&sales.rejected, "", ""),
                sales.retried_later
            )?;
        }
        let latency = &self.latency;
        writeln!(f, "  latency    request {}", percentiles(&latency.request))?;
        writeln!(f, "             sale    {}", percentiles(&latency.sale))?;
        writeln!(f, "             200     {}", percentiles(&latency.accepted))?;
        if latency.refused.count > 0 {
            writeln!(f, "             refused {}", percentiles(&latency.refused))?;
        }
        let drain = if self.drain.completed {
            "queues empty".to_owned()
        } else {
            format!(
                "gave up with {} sales unacknowledged on the tills ({} never sent, {} sent without an answer)",
                sales.undelivered, sales.never_sent, sales.sent_unanswered
            )
        };
        writeln!(f, "  drain      {:.1}s, {drain}", self.drain.seconds)?;
        self.incidents.fmt(f)?;
        self.receipts.fmt(f)?;
        self.verdict.fmt(f)
    }
}

impl fmt::Display for Incidents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  store      {} voids and {} refunds naming a sale, {} of them on another till; \
             {} stored before their sale was sent ({} voids pushed ahead of their sale)",
            self.voids,
            self.refunds_naming_a_sale,
            self.on_another_till,
            self.stored_before_their_sale,
            self.voids_pushed_ahead
        )?;
        if let Some(till) = self.offline_till {
            writeln!(
                f,
                "             till {till} lost its link from 30% to 60% of the load"
            )?;
        }
        if let Some(till) = &self.restored_till {
            writeln!(
                f,
                "             till {} restored from a backup (seq counter back {}): {} seqs used twice",
                till.terminal_id, till.rewind, till.seqs_reused
            )?;
        }
        if let Some(till) = &self.retired_till {
            let when = match (&till.retired_at, &till.error) {
                (Some(at), _) => format!("retired at {at}"),
                (None, Some(error)) => format!("NOT retired ({error})"),
                (None, None) => "not retired".to_owned(),
            };
            writeln!(
                f,
                "             till {} {when} holding {} unsent sales; {} acknowledged after",
                till.terminal_id, till.queued_at_retirement, till.acknowledged_after
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verification;
        let outcome = match (self.passed, self.complete) {
            (true, true) => "PASS",
            (true, false) => "PASS, incomplete",
            (false, _) => "FAIL",
        };
        writeln!(
            f,
            "verdict: {outcome}  lost {}, duplicated {}, mismatched totals {}, mismatched report rows {}, \
             mismatched tax rows {}, exceptions missing {} unexpected {}, refused unexpectedly {}, accepted after retirement {}, \
             failed incidents {}, tills with sync-state mismatches {}, tills unverified {} \
             ({} tills checked{}, {} rounds)",
            v.lost,
            v.duplicated,
            v.mismatched_totals,
            v.mismatched_report_rows,
            v.mismatched_tax_rows,
            v.exceptions_missing,
            v.exceptions_unexpected,
            v.refused_unexpectedly,
            v.accepted_after_retirement,
            v.incidents_failed,
            v.sync_state_mismatches,
            v.unverified_tills,
            v.tills_checked,
            unread(v),
            v.rounds
        )?;
        if v.still_queued > 0 {
            writeln!(
                f,
                "  still queued on tills: {} ({} never sent, {} sent without an answer and not stored): \
                 the drain gave up before the server had them, so they are not lost, and this run \
                 did not verify them",
                v.still_queued,
                v.still_queued_never_sent,
                v.still_queued - v.still_queued_never_sent
            )?;
        }
        if v.unanswered_but_stored > 0 {
            writeln!(
                f,
                "  sent without an answer and stored: {} (verified as stored)",
                v.unanswered_but_stored
            )?;
        }
        for d in &v.discrepancies {
            match d.terminal_id {
                Some(till) => writeln!(f, "  {} till {till}: {}", d.check, d.detail)?,
                None => writeln!(f, "  {} (store): {}", d.check, d.detail)?,
            }
        }
        Ok(())
    }
}

/// What of the store the verifier could not read, if anything.
fn unread(v: &Verification) -> &'static str {
    match (v.exceptions_unverified, v.store_rows_unverified) {
        (false, false) => "",
        (true, false) => ", exception list unread",
        (false, true) => ", store rows unread",
        (true, true) => ", exception list and store rows unread",
    }
}

/// "a: 1, b: 2", between `open` and `close` when there is anything.
fn buckets(counts: &std::collections::BTreeMap<String, u64>, open: &str, close: &str) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    format!("{open}{}{close}", shown.join(", "))
}

fn percentiles(p: &Percentiles) -> String {
    if p.count == 0 {
        return "none recorded".into();
    }
    format!(
        "p50 {:.1}ms  p90 {:.1}ms  p99 {:.1}ms  p99.9 {:.1}ms  max {:.1}ms  ({} samples)",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p99_9_ms, p.max_ms, p.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Verification;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let url = reqwest::Url::parse("https://ops:secret@tills.example/api").unwrap();
        assert_eq!(
            super::super::shown_url(&url),
            "https://ops@tills.example/api"
        );
    }

    #[test]
    fn the_verdict_fails_on_any_lost_duplicated_or_mismatched_sale() {
        assert!(Verdict::new(Verification::default()).passed);
        let lost = Verification {
            lost: 1,
            ..Verification::default()
        };
        let text = Verdict::new(lost).to_string();
        assert!(
            text.starts_with("verdict: FAIL  lost 1, duplicated 0"),
            "{text}"
        );
        for failed in [
            Verification {
                mismatched_report_rows: 1,
                ..Verification::default()
            },
            Verification {
                mismatched_tax_rows: 1,
                ..Verification::default()
            },
            Verification {
                exceptions_missing: 1,
                ..Verification::default()
            },
            Verification {
                refused_unexpectedly: 1,
                ..Verification::default()
            },
            Verification {
                exceptions_unverified: true,
                ..Verification::default()
            },
        ] {
            assert!(!Verdict::new(failed).passed);
        }
    }

    /// The finding: a drain that gave up with sales never sent is
    /// reported as such, not as sales lost, and does not fail the verdict.
    #[test]
    fn sales_still_queued_on_tills_are_reported_apart_and_do_not_fail() {
        let drained_partly = Verification {
            still_queued: 60_624,
            still_queued_never_sent: 60_000,
            tills_checked: 100,
            ..Verification::default()
        };
        let verdict = Verdict::new(drained_partly);
        assert!(verdict.passed);
        assert!(!verdict.complete);
        let text = verdict.to_string();
        assert!(
            text.starts_with("verdict: PASS, incomplete  lost 0,"),
            "{text}"
        );
        assert!(
            text.contains("still queued on tills: 60624 (60000 never sent, 624 sent without an answer and not stored)"),
            "{text}"
        );
    }
}
