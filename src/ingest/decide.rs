//! Step 2 of a push, pure: from what the push is checked against
//! ([`Seen`]), everything it stores and answers. Each valid sale is
//! classified against the stored sales it could collide with and the push's
//! earlier sales ([`classify`]); each one the classifier would accept is
//! added to the push's totals deltas, checked (one whose share would take a
//! delta beyond `i64` is refused alone with `total_out_of_range`); the till's sync
//! state is advanced ([`progress`]); and the push's row and its answer are
//! built ([`response`]).
//!
//! A fact is never dropped: a sale refused for good is kept as an exception
//! (its payload as sent) and its seq counts as settled, so the till's
//! contiguous prefix never waits for it; a sale holding a seq another sale
//! of the till holds is stored and listed; seqs the till declares skipped
//! are settled too.
//!
//! A sale of another till committed between the read and the write is not
//! seen here: the write then finds it, stores nothing, and the push is read
//! and decided again ([`super::Pipeline::push`]).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::classify::{Stored, Verdict, classify_with};
use super::read::Seen;
use super::response::{self, Counts};
use super::{IngestOptions, Item, Push, progress};
use crate::db::idempotency::StoredResponse;
use crate::db::push::{
    Conflicts, NewExceptions, NewSales, PushRow, Settled, Write, sale_json, sale_text,
};
use crate::db::sync::SyncState;
use crate::db::totals::TotalsColumns;
use crate::domain::bounds::{MAX_SEQ, storable};
use crate::domain::exception::{ExceptionKind, seq_subject};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::totals::Deltas;

/// What to write, the sync row it leaves, and the answer once it is written.
pub struct Planned {
    pub row: PushRow,
    /// The sync row the push leaves.
    pub next: SyncState,
    pub body: Vec<u8>,
    pub counts: Counts,
}

/// Decides everything `push` stores and answers, against `seen`.
pub fn decide(push: &Push<'_>, seen: &Seen, options: IngestOptions) -> Planned {
    let classified = classify(push, seen);
    let accepted_seqs: Vec<i64> = classified
        .accepted
        .iter()
        .map(|&i| push.items[i].valid_sale().seq)
        .collect();
    let settled = settled(push, &classified.verdicts);
    let next = progress::advance(&seen.sync, &seen.stored_above, &accepted_seqs, &settled.seq);
    let batch_id = Uuid::now_v7();
    let (body, counts) = response::body(
        batch_id,
        push.items,
        &classified.verdicts,
        next.contiguous_through_seq,
    );
    let totals = if options.maintain_totals {
        TotalsColumns::of(&classified.deltas)
    } else {
        TotalsColumns::default()
    };
    let row = Write {
        terminal: push.terminal,
        batch_id,
        key: push.key,
        seen: &seen.sync,
        next: &next,
        response: StoredResponse {
            request_sha256: push.request_sha256.to_vec(),
            status: 200,
            body: body.clone(),
        },
        sales: new_rows(push, &classified.accepted),
        conflicts: conflicts(push.items, &classified.verdicts),
        exceptions: exceptions(push, &classified),
        settled,
        totals,
    }
    .into_row();
    Planned {
        row,
        next,
        body,
        counts,
    }
}

/// What classifying a push came to.
struct Classified {
    /// Every item's verdict, in input order.
    verdicts: Vec<Verdict>,
    /// The indexes of the items to insert, in input order.
    accepted: Vec<usize>,
    /// For accepted items holding a seq another sale of the till holds:
    /// (item index, that sale).
    reused_seqs: Vec<(usize, Uuid)>,
    /// What the accepted sales add to the till's totals.
    deltas: Deltas,
}

/// Classifies the valid sales against what `seen` holds; invalid ones keep
/// the rejection parsing gave them.
fn classify(push: &Push<'_>, seen: &Seen) -> Classified {
    let terminal = push.terminal;
    let mut verdicts: Vec<Verdict> = push
        .items
        .iter()
        .map(|item| match &item.sale {
            Ok(_) => Verdict::Accept,
            Err(rejection) => Verdict::Reject(rejection.clone()),
        })
        .collect();
    let valid: Vec<usize> = (0..push.items.len())
        .filter(|&i| push.items[i].sale.is_ok())
        .collect();
    let sales: Vec<&Sale> = valid.iter().map(|&i| push.items[i].valid_sale()).collect();
    let mut deltas = Deltas::default();
    let classified = classify_with(
        terminal.terminal_id,
        &sales,
        &Stored::new(terminal.terminal_id, &seen.related),
        terminal.retired_at,
        |sale| {
            deltas
                .try_add(sale, &terminal.calendar)
                .map_err(|_| total_out_of_range())
        },
    );
    let mut accepted = Vec::new();
    let mut reused_seqs = Vec::new();
    for (index, outcome) in valid.into_iter().zip(classified) {
        if outcome.verdict == Verdict::Accept {
            accepted.push(index);
        }
        if let Some(holder) = outcome.reuses_seq_of {
            reused_seqs.push((index, holder));
        }
        verdicts[index] = outcome.verdict;
    }
    Classified {
        verdicts,
        accepted,
        reused_seqs,
        deltas,
    }
}

/// The rejections a resend can never get past, with their items.
fn refused_for_good<'a>(
    items: &'a [Item],
    verdicts: &'a [Verdict],
) -> impl Iterator<Item = (&'a Item, &'a Rejection)> {
    items
        .iter()
        .zip(verdicts)
        .filter_map(|(item, verdict)| match verdict {
            Verdict::Reject(rejection) if !rejection.retryable() => Some((item, rejection)),
            _ => None,
        })
}

/// The seqs this push settles: those of its sales refused for good, and
/// those the till declares skipped; each once, ascending.
fn settled(push: &Push<'_>, verdicts: &[Verdict]) -> Settled {
    let mut seqs: BTreeMap<i64, &'static str> = refused_for_good(push.items, verdicts)
        .filter_map(|(item, _)| item.seq)
        .filter(|seq| (1..=MAX_SEQ).contains(seq))
        .map(|seq| (seq, "refused"))
        .collect();
    for &seq in push.skipped {
        seqs.entry(seq).or_insert("skipped");
    }
    let mut settled = Settled::default();
    for (seq, reason) in seqs {
        settled.seq.push(seq);
        settled.reason.push(reason.to_owned());
    }
    settled
}

/// One exception a push lists.
struct Entry {
    kind: ExceptionKind,
    subject: String,
    sale_ids: Vec<Uuid>,
    seq: Option<i64>,
    code: Option<&'static str>,
    detail: String,
    /// As JSON text.
    payload: Option<String>,
}

/// Adds `entry` to what the push lists, one entry per subject: a second
/// sale of the push on a seq already listed is one more holder of it.
fn list(listed: &mut NewExceptions, entry: Entry) {
    if let Some(at) = listed.subject.iter().position(|s| *s == entry.subject) {
        let ids = &mut listed.sale_ids[at];
        for id in entry.sale_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        return;
    }
    listed.kind.push(entry.kind.as_str().to_owned());
    listed.subject.push(entry.subject);
    listed.sale_ids.push(entry.sale_ids);
    listed.seq.push(entry.seq);
    listed.code.push(entry.code.map(str::to_owned));
    listed.detail.push(entry.detail);
    listed.payload.push(entry.payload);
}

/// What this push lists for the back office: each payload refused for good,
/// each seq a new sale holds that another sale of the till holds, and each
/// new sale in a currency that is not its store's.
fn exceptions(push: &Push<'_>, classified: &Classified) -> NewExceptions {
    let mut listed = NewExceptions::default();
    for (item, rejection) in refused_for_good(push.items, &classified.verdicts) {
        let payload = match (&item.sale, &item.raw) {
            (Ok(sale), _) => serde_json::to_string(sale).ok(),
            (Err(_), Some(raw)) => Some(raw.get().to_owned()),
            (Err(_), None) => None,
        };
        let subject = payload_subject(payload.as_deref());
        let entry = Entry {
            kind: ExceptionKind::Refused,
            subject,
            sale_ids: item.sale_id.into_iter().collect(),
            seq: item.seq,
            code: Some(rejection.code),
            detail: storable(&format!(
                "refused for good ({}): {}",
                rejection.code, rejection.detail
            )),
            payload,
        };
        list(&mut listed, entry);
    }
    let terminal_id = push.terminal.terminal_id;
    for &(index, holder) in &classified.reused_seqs {
        let sale = push.items[index].valid_sale();
        let entry = Entry {
            kind: ExceptionKind::SeqReused,
            subject: seq_subject(terminal_id, sale.seq),
            sale_ids: vec![sale.sale_id, holder],
            seq: Some(sale.seq),
            code: None,
            detail: format!(
                "seq {} of terminal {terminal_id} is held by more than one sale \
                 (a till restored from a backup?)",
                sale.seq
            ),
            payload: None,
        };
        list(&mut listed, entry);
    }
    for sale in classified
        .accepted
        .iter()
        .map(|&i| push.items[i].valid_sale())
    {
        if sale.currency == push.terminal.currency {
            continue;
        }
        let entry = Entry {
            kind: ExceptionKind::CurrencyMismatch,
            subject: sale.sale_id.to_string(),
            sale_ids: vec![sale.sale_id],
            seq: Some(sale.seq),
            code: None,
            detail: format!(
                "{} {} is in {}, its store counts in {}: stored and counted in {}'s rows",
                sale.kind.as_str(),
                sale.sale_id,
                sale.currency,
                push.terminal.currency,
                sale.currency
            ),
            payload: None,
        };
        list(&mut listed, entry);
    }
    // Whichever sale of a seq arrived last, the same list.
    for ids in &mut listed.sale_ids {
        ids.sort();
    }
    listed
}

/// The subject of a refused payload: its content, so the same payload sent
/// again is listed once, and two different ones under one `sale_id` both.
fn payload_subject(payload: Option<&str>) -> String {
    let text = payload.unwrap_or_default();
    format!("payload:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The accepted sales as rows to insert.
fn new_rows(push: &Push<'_>, accepted: &[usize]) -> NewSales {
    let mut rows = NewSales::default();
    for sale in accepted.iter().map(|&i| push.items[i].valid_sale()) {
        rows.sale_id.push(sale.sale_id);
        rows.seq.push(sale.seq);
        rows.kind.push(sale.kind.as_str().to_owned());
        rows.occurred_at.push(sale.occurred_at.to_utc());
        rows.business_date
            .push(push.terminal.calendar.business_date(&sale.occurred_at));
        rows.currency.push(sale.currency.clone());
        rows.total_minor.push(sale.total_minor);
        rows.tax_minor.push(sale.tax_minor);
        rows.discount_minor.push(sale.discount_minor);
        rows.refers_to_sale_id.push(sale.refers_to_sale_id);
        rows.body.push(sale_text(sale));
    }
    rows
}

/// The payloads rejected as `sale_id_conflict`, so a person can see what
/// the till sent under an id that was already taken.
fn conflicts(items: &[Item], verdicts: &[Verdict]) -> Conflicts {
    let mut conflicts = Conflicts::default();
    for sale in items
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Reject(r) if r.code == "sale_id_conflict"))
        .filter_map(|(item, _)| item.sale.as_ref().ok())
    {
        conflicts.sale_id.push(sale.sale_id);
        conflicts.payload.push(sale_json(sale));
    }
    conflicts
}

fn total_out_of_range() -> Rejection {
    Rejection::new(
        "total_out_of_range",
        "this sale alone would take a total of this terminal beyond the largest amount that can be stored; it was not stored",
    )
}
