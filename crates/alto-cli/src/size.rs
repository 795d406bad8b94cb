//! Sizes on the command line: plain bytes or a number with a unit.
//!
//! Units follow GNU coreutils (`dd`, `sort -S`, `df -B`): a bare letter or an IEC `…iB` name
//! is binary, an SI `…B` name is decimal, case-insensitive:
//!
//! | unit                    | bytes |
//! |-------------------------|-------|
//! | (none), `B`             | 1     |
//! | `K`, `KiB`              | 1024  |
//! | `KB`                    | 1000  |
//! | `M`, `MiB` / `MB`       | 1024² / 1000² |
//! | `G`, `GiB` / `GB`       | 1024³ / 1000³ |
//! | `T`, `TiB` / `TB`       | 1024⁴ / 1000⁴ |
//! | `P`, `PiB` / `PB`       | 1024⁵ / 1000⁵ |
//!
//! A fraction is allowed with a unit (`1.5G`) and rounded to the nearest byte; a plain
//! number of bytes must be whole. Negative sizes, exponents, signs and anything else are
//! refused.

fn unit(u: &str) -> Option<u64> {
    let u = u.to_ascii_lowercase();
    let (letter, rest) = match u.chars().next() {
        None => return Some(1),
        Some(c) => (c, &u[c.len_utf8()..]),
    };
    if letter == 'b' && rest.is_empty() {
        return Some(1);
    }
    let power = match letter {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        _ => return None,
    };
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    Some(base.pow(power))
}

/// Parses a size (see the module docs) into bytes, 0 to `i64::MAX`.
pub(crate) fn parse(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad =
        |why: &str| format!("`{s}` is not a size: {why}; expected e.g. 4096, 4k, 10MiB or 1.5GB");
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    if t.starts_with('-') {
        return Err(bad("sizes cannot be negative"));
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, rest) = t.split_at(split);
    if num.is_empty() || !num.bytes().any(|b| b.is_ascii_digit()) || num.matches('.').count() > 1 {
        return Err(bad("it does not start with a number"));
    }
    let rest = rest.trim_start();
    let Some(mult) = unit(rest) else {
        return Err(bad(&format!("unknown unit `{rest}`")));
    };
    let too_large = || format!("`{s}` is too large (at most {} bytes)", i64::MAX);
    if !num.contains('.') {
        let n: u64 = num.parse().map_err(|_| too_large())?;
        let b = n.checked_mul(mult).ok_or_else(too_large)?;
        return i64::try_from(b).map_err(|_| too_large());
    }
    if mult == 1 {
        return Err(bad("a number of bytes must be whole"));
    }
    let v: f64 = num.parse().map_err(|_| bad("it does not start with a number"))?;
    let b = (v * mult as f64).round();
    // `i64::MAX as f64` rounds up to 2^63, which itself does not fit.
    if !b.is_finite() || b >= i64::MAX as f64 {
        return Err(too_large());
    }
    Ok(b as i64)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn plain_bytes() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("512"), Ok(512));
        assert_eq!(parse(" 4096 "), Ok(4096));
        assert_eq!(parse("100B"), Ok(100));
        assert_eq!(parse("100 b"), Ok(100));
        assert_eq!(parse("9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn binary_units() {
        assert_eq!(parse("4k"), Ok(4096));
        assert_eq!(parse("4K"), Ok(4096));
        assert_eq!(parse("10KiB"), Ok(10 * 1024));
        assert_eq!(parse("10MiB"), Ok(10 << 20));
        assert_eq!(parse("10 mib"), Ok(10 << 20));
        assert_eq!(parse("1.5MiB"), Ok(1536 * 1024));
        assert_eq!(parse("2G"), Ok(2 << 30));
        assert_eq!(parse("1T"), Ok(1 << 40));
        assert_eq!(parse("1PiB"), Ok(1 << 50));
        assert_eq!(parse(".5K"), Ok(512));
    }

    #[test]
    fn decimal_units() {
        assert_eq!(parse("1KB"), Ok(1000));
        assert_eq!(parse("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse("1.5gb"), Ok(1_500_000_000));
        assert_eq!(parse("2MB"), Ok(2_000_000));
        assert_eq!(parse("3TB"), Ok(3_000_000_000_000));
        assert_eq!(parse("1PB"), Ok(1_000_000_000_000_000));
    }

    #[test]
    fn rejects_negative_and_garbage_with_a_reason() {
        let err = |s: &str| parse(s).expect_err(s);
        assert!(err("-5").contains("cannot be negative"), "{}", err("-5"));
        assert!(err("-1K").contains("cannot be negative"));
        assert!(err("").contains("empty"));
        assert!(err("   ").contains("empty"));
        assert!(err("abc").contains("does not start with a number"));
        assert!(err("K").contains("does not start with a number"));
        assert!(err(".").contains("does not start with a number"));
        assert!(err("1.2.3K").contains("does not start with a number"));
        assert!(err("+5").contains("does not start with a number"));
        assert!(err("5X").contains("unknown unit `X`"), "{}", err("5X"));
        assert!(err("5 KK").contains("unknown unit `KK`"));
        assert!(err("1e6").contains("unknown unit `e6`"));
        assert!(err("10MiBs").contains("unknown unit"));
        assert!(err("nan").contains("does not start with a number"));
        assert!(err("1.5").contains("whole"));
        assert!(err("99999999999T").contains("too large"));
        assert!(err("9223372036854775808").contains("too large"));
        assert!(err("99999999999999999999999").contains("too large"));
        assert!(err("8192P").contains("too large"));
        assert!(err("8.5EiB").contains("unknown unit"));
        // Every message names the input and says what a size looks like.
        for s in ["-5", "abc", "5X", "1.5"] {
            let e = err(s);
            assert!(e.starts_with(&format!("`{s}` is not a size")), "{e}");
            assert!(e.contains("10MiB"), "{e}");
        }
    }
}
