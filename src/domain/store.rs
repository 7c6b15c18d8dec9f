//! Store settings that must be checked before they are stored: names, IANA
//! time zones (business dates depend on them) and ISO 4217 currencies.

use chrono_tz::Tz;

use super::bounds::{MAX_NAME_CHARS, check_text};

/// A display name: not blank, without NUL (Postgres text cannot hold it),
/// at most `MAX_NAME_CHARS` characters, trimmed.
pub fn parse_name(field: &str, raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    check_text(name, MAX_NAME_CHARS).map_err(|problem| problem.describe(field))?;
    Ok(name.to_owned())
}

/// An IANA time zone name such as `Europe/Berlin`.
pub fn parse_timezone(raw: &str) -> Result<Tz, String> {
    raw.parse::<Tz>()
        .map_err(|_| format!("{raw:?} is not an IANA time zone name"))
}

/// An ISO 4217 alphabetic code such as `EUR`.
pub fn parse_currency(raw: &str) -> Result<String, String> {
    iso_currency::Currency::from_code(raw)
        .map(|c| c.code().to_owned())
        .ok_or_else(|| format!("{raw:?} is not an ISO 4217 currency code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert_eq!(parse_name("name", "  Main St  ").unwrap(), "Main St");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_name("name", &"x".repeat(201)).is_err());
        assert!(parse_name("name", "Main\0St").is_err());
        assert_eq!(
            parse_timezone("Europe/Berlin").unwrap(),
            chrono_tz::Europe::Berlin
        );
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert_eq!(parse_currency("EUR").unwrap(), "EUR");
        assert!(parse_currency("eur").is_err());
    }
}
