//! What the back office must look at: a fact the server stored but could not
//! square with the others (a void whose sale never came, refunds beyond a
//! sale's total, a seq two sales hold), or a payload it refused for good. The
//! server flags; it never drops. Each is keyed by its kind and a subject (what
//! it is about: a sale id, a till's seq), so the same finding listed twice,
//! in whichever order its facts arrived, is one exception.

use uuid::Uuid;

/// The kinds of exception, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExceptionKind {
    /// A void or refund whose sale has not arrived.
    UnmatchedReference,
    /// The refunds of a sale add up to more than its total.
    OverRefund,
    /// A refund that occurred after its sale's void.
    RefundOfVoidedSale,
    /// A void that occurred after a refund of its sale.
    VoidOfRefundedSale,
    /// A void whose amounts or currency are not its sale's.
    VoidMismatch,
    /// A void of a sale another void took out first.
    DuplicateVoid,
    /// A void that names a void.
    VoidOfVoid,
    /// Refund lines that return more of a sale's line than it sold.
    LineOverReturned,
    /// Several sales of one till hold one seq (a till restored from a backup).
    SeqReused,
    /// A payload refused for good, kept as it was sent.
    Refused,
    /// A fact in a currency that is not its store's: stored and counted in
    /// its own currency's rows, never converted.
    CurrencyMismatch,
}

impl ExceptionKind {
    pub const ALL: [ExceptionKind; 11] = [
        ExceptionKind::UnmatchedReference,
        ExceptionKind::OverRefund,
        ExceptionKind::RefundOfVoidedSale,
        ExceptionKind::VoidOfRefundedSale,
        ExceptionKind::VoidMismatch,
        ExceptionKind::DuplicateVoid,
        ExceptionKind::VoidOfVoid,
        ExceptionKind::LineOverReturned,
        ExceptionKind::SeqReused,
        ExceptionKind::Refused,
        ExceptionKind::CurrencyMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::UnmatchedReference => "unmatched_reference",
            ExceptionKind::OverRefund => "over_refund",
            ExceptionKind::RefundOfVoidedSale => "refund_of_voided_sale",
            ExceptionKind::VoidOfRefundedSale => "void_of_refunded_sale",
            ExceptionKind::VoidMismatch => "void_mismatch",
            ExceptionKind::DuplicateVoid => "duplicate_void",
            ExceptionKind::VoidOfVoid => "void_of_void",
            ExceptionKind::LineOverReturned => "line_over_returned",
            ExceptionKind::SeqReused => "seq_reused",
            ExceptionKind::Refused => "refused",
            ExceptionKind::CurrencyMismatch => "currency_mismatch",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One finding to list: its kind, its subject, the facts it is about (the
/// subject's own first), and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub kind: ExceptionKind,
    pub subject: String,
    pub sale_ids: Vec<Uuid>,
    pub detail: String,
}

/// The subject of a seq held by several sales of a till.
pub fn seq_subject(terminal_id: Uuid, seq: i64) -> String {
    format!("{terminal_id}:{seq}")
}
