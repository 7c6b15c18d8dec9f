//! The sales both phases write, built before the clock starts, so the load
//! generator (which shares the two cores with what it measures) spends a
//! copy and a few patches per push instead of formatting JSON.

use uuid::Uuid;

/// Width of a sale's `seq` slot: any `u64`, right-aligned after spaces
/// (JSON allows whitespace before a value).
const SEQ_WIDTH: usize = 20;

/// One valid sale, the `position`-th of its batch: two lines, one card
/// tender, amounts that vary with the position.
pub fn sale_json(position: usize, sale_id: Uuid, seq: u64) -> String {
    let total = 1000 + (position % 500) as i64;
    let half = total / 2;
    format!(
        r#"{{"sale_id":"{sale_id}","seq":{seq:>SEQ_WIDTH$},"kind":"sale","occurred_at":"2026-11-20T10:15:00+01:00","currency":"EUR","lines":[{{"sku":"COFFEE","description":"Flat white","quantity":1,"amount_minor":{half}}},{{"sku":"CAKE","quantity":2,"amount_minor":{}}}],"tenders":[{{"method":"card","amount_minor":{total}}}],"total_minor":{total},"tax_minor":{},"discount_minor":0}}"#,
        total - half,
        total / 10
    )
}

/// A batch body (`{"sales":[...]}`) with a slot for each sale's id and seq.
pub struct BodyTemplate {
    bytes: Vec<u8>,
    /// Where each sale's id and seq slots start.
    slots: Vec<(usize, usize)>,
}

impl BodyTemplate {
    pub fn new(batch: usize) -> Self {
        let mut bytes = br#"{"sales":["#.to_vec();
        let mut slots = Vec::with_capacity(batch);
        for position in 0..batch {
            if position > 0 {
                bytes.push(b',');
            }
            let sale = sale_json(position, Uuid::nil(), 0);
            let slot = |key: &str| bytes.len() + sale.find(key).expect("the key") + key.len();
            slots.push((slot(r#""sale_id":""#), slot(r#""seq":"#)));
            bytes.extend_from_slice(sale.as_bytes());
        }
        bytes.extend_from_slice(b"]}");
        Self { bytes, slots }
    }

    /// The batch with new sale ids and seqs `first_seq`, `first_seq + 1`, ...
    pub fn fill(&self, first_seq: u64) -> Vec<u8> {
        let mut body = self.bytes.clone();
        for (&(id_at, seq_at), seq) in self.slots.iter().zip(first_seq..) {
            Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut body[id_at..id_at + 36]);
            write_right_aligned(&mut body[seq_at..seq_at + SEQ_WIDTH], seq);
        }
        body
    }
}

/// `n` in decimal at the end of `slot`, over the spaces there.
fn write_right_aligned(slot: &mut [u8], mut n: u64) {
    slot.fill(b' ');
    for at in (0..slot.len()).rev() {
        slot[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
}
