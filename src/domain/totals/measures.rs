//! The measures a totals row holds, and their one way of adding up:
//! checked, field by field. A sum that does not fit is `OutOfRange`.

/// A total that `i64` cannot hold: a clear refusal, never a wrapped number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a total would go beyond the range of a 64-bit integer")]
pub struct OutOfRange;

/// A set of measures that adds up field by field, checked.
pub trait CheckedSum: Copy + Default {
    fn checked_add(&self, other: &Self) -> Result<Self, OutOfRange>;
}

fn add(a: i64, b: i64) -> Result<i64, OutOfRange> {
    a.checked_add(b).ok_or(OutOfRange)
}

/// A totals row's measures. The money a back office splits a receipt into
/// (item sales, gift cards sold, tips, service charges, rounding, net
/// sales) is counted like the tax: what sales add, less what refunds take
/// back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
    pub discounts_minor: i64,
    pub tax_minor: i64,
    pub item_sales_minor: i64,
    pub gift_card_sales_minor: i64,
    pub tips_minor: i64,
    pub service_charges_minor: i64,
    pub rounding_minor: i64,
    pub net_sales_minor: i64,
}

impl CheckedSum for Measures {
    fn checked_add(&self, other: &Measures) -> Result<Measures, OutOfRange> {
        Ok(Measures {
            sales_count: add(self.sales_count, other.sales_count)?,
            refunds_count: add(self.refunds_count, other.refunds_count)?,
            voids_count: add(self.voids_count, other.voids_count)?,
            gross_minor: add(self.gross_minor, other.gross_minor)?,
            refunds_minor: add(self.refunds_minor, other.refunds_minor)?,
            discounts_minor: add(self.discounts_minor, other.discounts_minor)?,
            tax_minor: add(self.tax_minor, other.tax_minor)?,
            item_sales_minor: add(self.item_sales_minor, other.item_sales_minor)?,
            gift_card_sales_minor: add(self.gift_card_sales_minor, other.gift_card_sales_minor)?,
            tips_minor: add(self.tips_minor, other.tips_minor)?,
            service_charges_minor: add(self.service_charges_minor, other.service_charges_minor)?,
            rounding_minor: add(self.rounding_minor, other.rounding_minor)?,
            net_sales_minor: add(self.net_sales_minor, other.net_sales_minor)?,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenderMeasures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
}

/// What one tax code adds up to: the facts that name it, and their tax.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaxMeasures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub tax_minor: i64,
}

impl CheckedSum for TaxMeasures {
    fn checked_add(&self, other: &TaxMeasures) -> Result<TaxMeasures, OutOfRange> {
        Ok(TaxMeasures {
            sales_count: add(self.sales_count, other.sales_count)?,
            refunds_count: add(self.refunds_count, other.refunds_count)?,
            tax_minor: add(self.tax_minor, other.tax_minor)?,
        })
    }
}

impl CheckedSum for TenderMeasures {
    fn checked_add(&self, other: &TenderMeasures) -> Result<TenderMeasures, OutOfRange> {
        Ok(TenderMeasures {
            sales_count: add(self.sales_count, other.sales_count)?,
            refunds_count: add(self.refunds_count, other.refunds_count)?,
            gross_minor: add(self.gross_minor, other.gross_minor)?,
            refunds_minor: add(self.refunds_minor, other.refunds_minor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_sums_refuse_every_measure_that_overflows() {
        let one = Measures {
            sales_count: 1,
            refunds_count: 1,
            voids_count: 1,
            gross_minor: 1,
            refunds_minor: 1,
            discounts_minor: 1,
            tax_minor: 1,
            item_sales_minor: 1,
            gift_card_sales_minor: 1,
            tips_minor: 1,
            service_charges_minor: 1,
            rounding_minor: 1,
            net_sales_minor: 1,
        };
        assert_eq!(one.checked_add(&one).unwrap().tax_minor, 2);
        let fields: [fn(&mut Measures); 13] = [
            |m| m.sales_count = i64::MAX,
            |m| m.refunds_count = i64::MAX,
            |m| m.voids_count = i64::MAX,
            |m| m.gross_minor = i64::MAX,
            |m| m.refunds_minor = i64::MAX,
            |m| m.discounts_minor = i64::MAX,
            |m| m.tax_minor = i64::MAX,
            |m| m.item_sales_minor = i64::MAX,
            |m| m.gift_card_sales_minor = i64::MAX,
            |m| m.tips_minor = i64::MAX,
            |m| m.service_charges_minor = i64::MAX,
            |m| m.rounding_minor = i64::MAX,
            |m| m.net_sales_minor = i64::MAX,
        ];
        for set in fields {
            let mut full = Measures::default();
            set(&mut full);
            assert_eq!(full.checked_add(&one), Err(OutOfRange));
        }
        let low = TenderMeasures {
            refunds_minor: i64::MIN,
            ..TenderMeasures::default()
        };
        let minus = TenderMeasures {
            refunds_minor: -1,
            ..TenderMeasures::default()
        };
        assert_eq!(low.checked_add(&minus), Err(OutOfRange));
    }
}
