//! Durations as people write them in scenario and configuration files: `"250ms"`, `"5s"`.
//!
//! Owns: parsing and printing that notation. Never: reading a clock.

use std::time::Duration;

/// Parses a duration: a non-negative decimal number and a unit, `ns`, `us`, `ms`, `s` or `m`,
/// with nothing in between: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"100us"`, `"0s"`. Exact to the
/// nanosecond; finer fractions, other units, signs, exponents and spaces are refused.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration: write a number and a unit (ns, us, ms, s, m), e.g. \"250ms\", \"5s\", \"1.5s\", \"2m\""
        )
    };
    const UNITS: [(&str, u128); 5] = [
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
    ];
    let (number, unit) = UNITS
        .iter()
        .find_map(|&(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, unit)))
        .ok_or_else(bad)?;
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |d: &str, max: usize| d.len() <= max && d.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int, 20) || !digits(frac, 18) || number.ends_with('.') {
        return Err(bad());
    }
    let int: u128 = int.parse().map_err(|_| bad())?;
    let mut nanos = int.checked_mul(unit).ok_or_else(bad)?;
    if !frac.is_empty() {
        let scaled = frac.parse::<u128>().map_err(|_| bad())? * unit;
        let denominator = 10u128.pow(frac.len() as u32);
        if scaled % denominator != 0 {
            return Err(format!("{s:?} is finer than a nanosecond"));
        }
        nanos += scaled / denominator;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes a duration in the largest unit that keeps it exact, as [`parse`] reads it.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format_exactly() {
        let ok = [
            ("250ms", 250_000),
            ("5s", 5_000_000),
            ("1.5s", 1_500_000),
            ("2m", 120_000_000),
            ("0s", 0),
            ("100us", 100),
        ];
        for (s, us) in ok {
            assert_eq!(parse(s), Ok(Duration::from_micros(us)), "{s}");
            let d = Duration::from_micros(us);
            assert_eq!(parse(&format(d)), Ok(d));
        }
        assert_eq!(parse("1.5us"), Ok(Duration::from_nanos(1_500)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0.25m"), Ok(Duration::from_secs(15)));
        for bad in [
            "",
            "5",
            "5h",
            "-1s",
            "abc",
            "s",
            "1e3s",
            "1.2.3s",
            "5 s",
            " 5s",
            ".5s",
            "5.s",
            "+1s",
            "0.5ns",
            "99999999999999999999999m",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
