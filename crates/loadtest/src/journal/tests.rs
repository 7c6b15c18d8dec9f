use super::*;
use crate::client::SaleResult;
use crate::generator::Target;

/// A journal of till 0 with `sales` plain sales rung up.
fn journal_with(sales: usize, voids_ahead: bool) -> Journal {
    let mut journal = Journal::new(0, voids_ahead, Shop::default());
    for content in 0..sales as u64 {
        ring(&mut journal, Ticket::Sale { content });
    }
    journal
}

fn ring(journal: &mut Journal, ticket: Ticket) -> Uuid {
    let sale_id = Uuid::new_v4();
    journal.ring_up(sale_id, ticket, Instant::now(), Utc::now());
    sale_id
}

/// A void of entry `entry` of till `till` in `journal`.
fn void_of(journal: &Journal, till: usize, entry: usize) -> Ticket {
    Ticket::Void {
        of: Target {
            sale_id: journal.entries[entry].sale_id,
            content: entry as u64,
            till,
            entry,
        },
    }
}

fn answer(journal: &Journal, batch: &Batch, status: &str) -> BatchResponse {
    BatchResponse {
        results: batch
            .entries
            .iter()
            .map(|&index| SaleResult {
                sale_id: Some(journal.entries[index].sale_id),
                status: status.into(),
                code: (status == "rejected").then(|| "invalid_line".into()),
                retryable: (status == "rejected").then_some(false),
            })
            .collect(),
    }
}

fn settle(journal: &mut Journal, batch: &Batch, status: &str) -> Settled {
    let answered = answer(journal, batch, status);
    journal.settle(batch, &answered, Instant::now()).unwrap()
}

fn take(journal: &mut Journal, batch_size: usize) -> Option<Batch> {
    journal.take_batch(batch_size, Instant::now())
}

fn seqs(journal: &Journal, batch: &Batch) -> Vec<i64> {
    batch
        .entries
        .iter()
        .map(|&i| journal.entries[i].seq)
        .collect()
}

fn view(highest_seq: i64, missing: Vec<[i64; 2]>) -> SyncView {
    SyncView {
        highest_seq,
        contiguous_through_seq: 0,
        missing_seq_ranges: missing,
        sales_stored: 0,
        business_day: None,
    }
}

#[test]
fn a_batch_takes_the_head_of_the_queue_in_order() {
    let mut journal = journal_with(5, true);
    let batch = take(&mut journal, 3).unwrap();
    assert_eq!(seqs(&journal, &batch), [1, 2, 3]);
    let body: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
    let sent: Vec<i64> = body["sales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(sent, [1, 2, 3]);
    let rest = take(&mut journal, 3).unwrap();
    assert_eq!(seqs(&journal, &rest), [4, 5]);
    assert!(take(&mut journal, 3).is_none());
}

#[test]
fn stored_and_refused_sales_are_settled_and_latency_is_taken_once() {
    let mut journal = journal_with(4, true);
    let batch = take(&mut journal, 2).unwrap();
    assert_eq!(
        settle(&mut journal, &batch, "accepted")
            .first_acknowledged
            .len(),
        2
    );
    // The server lost them; resent and acknowledged again as duplicates.
    journal.requeue_missing(&view(0, vec![]));
    let resend = take(&mut journal, 2).unwrap();
    assert_eq!(seqs(&journal, &resend), [1, 2]);
    assert!(
        settle(&mut journal, &resend, "duplicate")
            .first_acknowledged
            .is_empty()
    );

    let batch = take(&mut journal, 2).unwrap();
    let settled = settle(&mut journal, &batch, "rejected");
    assert_eq!(
        settled.refused,
        [(3, "invalid_line".into()), (4, "invalid_line".into())]
    );
    assert_eq!(journal.undelivered(), 0);
    let fates: Vec<Fate> = journal.expected().into_iter().map(|s| s.fate).collect();
    let refused = Fate::Refused {
        code: "invalid_line".into(),
    };
    assert_eq!(
        fates,
        [
            Fate::Acknowledged,
            Fate::Acknowledged,
            refused.clone(),
            refused
        ]
    );
}

/// Only `occurred_at_in_future` can succeed later (the till's clock was
/// ahead): the sale goes to the back of the queue, the rest is settled.
#[test]
fn a_sale_refused_for_now_goes_back_to_the_end_of_the_queue() {
    let mut journal = journal_with(3, true);
    let batch = take(&mut journal, 2).unwrap();
    let mut answered = answer(&journal, &batch, "accepted");
    answered.results[0].status = "rejected".into();
    answered.results[0].code = Some("occurred_at_in_future".into());
    answered.results[0].retryable = None;
    let settled = journal.settle(&batch, &answered, Instant::now()).unwrap();
    assert_eq!((settled.retry_later, settled.refused.len()), (1, 0));
    let next = take(&mut journal, 5).unwrap();
    assert_eq!(seqs(&journal, &next), [3, 1]);
}

#[test]
fn a_void_of_a_sale_still_queued_is_pushed_ahead_of_it_alone() {
    let mut journal = journal_with(3, true);
    let sent = take(&mut journal, 1).unwrap();
    // Seq 4 voids seq 2 (queued); seq 5 voids seq 1 (sent already);
    // seq 6 voids a sale of another till.
    let queued = void_of(&journal, 0, 1);
    ring(&mut journal, queued);
    let already_sent = void_of(&journal, 0, 0);
    ring(&mut journal, already_sent);
    let elsewhere = void_of(&journal, 3, 1);
    ring(&mut journal, elsewhere);

    let ahead = take(&mut journal, 10).unwrap();
    assert_eq!(seqs(&journal, &ahead), [4]);
    let rest = take(&mut journal, 10).unwrap();
    assert_eq!(seqs(&journal, &rest), [2, 3, 5, 6]);
    assert_eq!(journal.voids_pushed_ahead(), 1);
    drop(sent);
}

#[test]
fn without_voids_ahead_a_void_waits_its_turn() {
    let mut journal = journal_with(3, false);
    let queued = void_of(&journal, 0, 1);
    ring(&mut journal, queued);
    let batch = take(&mut journal, 10).unwrap();
    assert_eq!(seqs(&journal, &batch), [1, 2, 3, 4]);
    assert_eq!(journal.voids_pushed_ahead(), 0);
}

#[test]
fn a_restored_till_rings_new_sales_with_seqs_it_used() {
    let mut journal = journal_with(30, true);
    journal.rewind(20);
    for content in 100..105 {
        ring(&mut journal, Ticket::Sale { content });
    }
    let all = take(&mut journal, 100).unwrap();
    let seqs = seqs(&journal, &all);
    assert_eq!(&seqs[28..], [29, 30, 11, 12, 13, 14, 15]);
    let expected = journal.expected();
    assert_ne!(expected[10].sale_id, expected[30].sale_id);
    assert_eq!(expected[10].seq, expected[30].seq);
    // Back past the first seq: it starts again at 1.
    journal.rewind(1000);
    ring(&mut journal, Ticket::Sale { content: 7 });
    assert_eq!(journal.expected().last().unwrap().seq, 1);
}

#[test]
fn an_answer_that_does_not_fit_the_batch_changes_nothing() {
    let mut journal = journal_with(2, true);
    let batch = take(&mut journal, 2).unwrap();
    let mut wrong = answer(&journal, &batch, "accepted");
    wrong.results.swap(0, 1);
    assert!(journal.settle(&batch, &wrong, Instant::now()).is_err());
    wrong.results.pop();
    assert!(journal.settle(&batch, &wrong, Instant::now()).is_err());
    assert_eq!(journal.undelivered(), 2);
}

#[test]
fn stored_sales_the_server_reports_missing_go_back_to_the_head_of_the_queue() {
    let mut journal = journal_with(10, true);
    let batch = take(&mut journal, 8).unwrap();
    settle(&mut journal, &batch, "accepted");
    // 3..=4 in a gap, 8 above the highest seq; 9 and 10 were never sent.
    assert_eq!(journal.requeue_missing(&view(7, vec![[3, 4]])), 3);
    let resend = take(&mut journal, 10).unwrap();
    assert_eq!(seqs(&journal, &resend), [3, 4, 8, 9, 10]);
    assert_eq!(journal.undelivered(), 5);
}

#[test]
fn sales_not_yet_acknowledged_are_not_queued_twice() {
    let mut journal = journal_with(4, true);
    let _in_flight = take(&mut journal, 4).unwrap();
    assert_eq!(journal.requeue_missing(&view(0, vec![])), 0);
    assert!(take(&mut journal, 4).is_none());
}

/// What the verdict is told: acknowledged (once is enough, even if the
/// server lost it since), sent without an answer, or never sent.
#[test]
fn each_sale_ends_with_the_fate_its_till_saw() {
    let mut journal = journal_with(6, true);
    let first = take(&mut journal, 2).unwrap();
    settle(&mut journal, &first, "accepted");
    journal.requeue_missing(&view(1, vec![]));
    let _unanswered = take(&mut journal, 3).unwrap();
    let fates: Vec<Fate> = journal.expected().into_iter().map(|s| s.fate).collect();
    assert_eq!(
        fates,
        [
            Fate::Acknowledged,
            Fate::Acknowledged,
            Fate::SentUnanswered,
            Fate::SentUnanswered,
            Fate::NeverSent,
            Fate::NeverSent,
        ]
    );
    assert_eq!(journal.undelivered(), 5);
}

/// A sale the server answered for is not kept built (a long soak rings up
/// more than the machine's memory holds built); one resent after
/// `/v1/sync` reports it missing is built again, byte for byte the same.
#[test]
fn a_stored_sale_is_dropped_built_and_resent_the_same() {
    let mut journal = journal_with(3, true);
    let first = take(&mut journal, 3).unwrap();
    settle(&mut journal, &first, "accepted");
    assert!(journal.entries.iter().all(|e| e.sale.is_none()));
    let expected = journal.expected();
    assert!(journal.entries.iter().all(|e| e.sale.is_none()));
    assert_eq!(journal.requeue_missing(&view(0, vec![])), 3);
    let resend = take(&mut journal, 3).unwrap();
    assert_eq!(resend.body, first.body);
    let sent: serde_json::Value = serde_json::from_slice(&resend.body).unwrap();
    assert_eq!(sent["sales"][2]["sale_id"], expected[2].sale_id.to_string());
}
