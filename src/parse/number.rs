//! Numbers in text (pure): a fixed decimal separator, never guessed per value
//! (field case B28), and the spellings of NaN and infinity devices emit
//! (field case B29).

use crate::model::Value;

/// Why a text is not a finite number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumError {
    /// Empty text.
    Empty,
    /// `nan`, `-nan`, `NaN`, `inf`, `Infinity`, `-Infinity`…
    NonFinite(String),
    /// Anything else, with the reason.
    Invalid(String),
}

impl std::fmt::Display for NumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumError::Empty => f.write_str("empty value"),
            NumError::NonFinite(s) => write!(f, "non-finite value {s:?}"),
            NumError::Invalid(s) => f.write_str(s),
        }
    }
}

/// True for the non-finite spellings: `nan`, `-nan`, `+nan`, `NaN`, `inf`,
/// `-inf`, `Infinity`, `-Infinity` (any case).
pub fn is_non_finite_word(s: &str) -> bool {
    let l = s.trim().trim_start_matches(['+', '-']).to_ascii_lowercase();
    matches!(l.as_str(), "nan" | "inf" | "infinity" | "nan(ind)" | "1.#ind" | "1.#inf")
}

/// True when `text` is text rather than a number, even a malformed one: it
/// is not a number, boolean or non-finite spelling, and it holds a letter
/// other than the exponent `e` (`Anna`, `ERR`, `n/a`, `v1.2`). `0.5` in a
/// decimal-comma source, `-` or `1.2.3` are malformed numbers, not text.
pub fn is_text(text: &str, decimal: char) -> bool {
    matches!(parse_number(text, decimal), Err(NumError::Invalid(_))) && text.chars().any(|c| c.is_alphabetic() && c != 'e' && c != 'E')
}

/// Parses a number with `decimal` (`'.'` or `','`) as the decimal separator.
///
/// Integers (no separator, no exponent) stay exact as [`Value::I64`] or
/// [`Value::U64`]; others are [`Value::F64`]. The other separator anywhere is
/// an error: `0.673` in a decimal-comma file is refused, never read as 673.
/// `true`/`false` are booleans.
pub fn parse_number(text: &str, decimal: char) -> Result<Value, NumError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(NumError::Empty);
    }
    if is_non_finite_word(s) {
        return Err(NumError::NonFinite(s.to_string()));
    }
    if s.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if s.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    let other = if decimal == ',' { '.' } else { ',' };
    if s.contains(other) {
        return Err(NumError::Invalid(format!(
            "{s:?} contains {other:?} but the decimal separator is {decimal:?} (thousands separators are not accepted)"
        )));
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == decimal || c == 'e' || c == 'E' || c == '+' || c == '-') {
        return Err(NumError::Invalid(format!("{s:?} is not a number")));
    }
    if !s.contains([decimal, 'e', 'E']) {
        if let Ok(i) = s.parse::<i64>() {
            return Ok(Value::I64(i));
        }
        if let Ok(u) = s.parse::<u64>() {
            return Ok(Value::U64(u));
        }
        // Beyond 64 bits: keep it as a float, never wrap.
    }
    let normal = if decimal == ',' { s.replace(',', ".") } else { s.to_string() };
    match normal.parse::<f64>() {
        // `1e-400` is not 0: refused like `1e400`, never a plausible zero.
        Ok(f) if f == 0.0 && s.split(['e', 'E']).next().is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b))) => {
            Err(NumError::Invalid(format!("{s:?} is too small for a 64-bit float (it would read as 0)")))
        }
        Ok(f) if f.is_finite() => Ok(Value::F64(f)),
        Ok(_) => Err(NumError::NonFinite(s.to_string())),
        Err(_) => Err(NumError::Invalid(format!("{s:?} is not a number"))),
    }
}

/// Beyond this magnitude a 64-bit float no longer holds every integer.
const EXACT_F64: f64 = 9_007_199_254_740_992.0; // 2^53

/// The `uncertain` reason of a number that a 64-bit float may not hold
/// exactly: [`inexact`] for text, or any float beyond 2^53 when the text is
/// not known (JSON numbers beyond 64-bit integers).
pub const PRECISION_LOSS: &str = "precision_loss: beyond 2^53 a 64-bit float does not hold the value as written";

/// True when `v`, read from `text` by [`parse_number`], is a float beyond
/// 2^53 that differs from the number written (`100000000000000000001`,
/// `9007199254740993.0`): kept, marked uncertain with [`PRECISION_LOSS`].
/// `1e20` is exact. Integers within 64 bits are exact `I64`/`U64` already.
pub fn inexact(text: &str, decimal: char, v: &Value) -> bool {
    let Value::F64(x) = v else { return false };
    if x.abs() < EXACT_F64 {
        return false;
    }
    canonical(text.trim(), decimal) != canonical(&format!("{:e}", x.abs()), '.')
}

/// The significant digits of a decimal number's text (no sign, no leading or
/// trailing zeros) and the power of ten of the first one.
fn canonical(text: &str, decimal: char) -> Option<(String, i64)> {
    let t = text.trim_start_matches(['+', '-']);
    let (mant, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once(decimal).unwrap_or((mant, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_string();
    Some((digits, exp + int.len() as i64 - 1 - lead as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_separator_is_fixed() {
        assert_eq!(parse_number("0,673", ','), Ok(Value::F64(0.673)));
        assert_eq!(parse_number("0,02375", ','), Ok(Value::F64(0.02375)));
        assert_eq!(parse_number("12", ','), Ok(Value::I64(12)));
        assert!(matches!(parse_number("0.673", ','), Err(NumError::Invalid(_))), "never 673");
        assert!(matches!(parse_number("1,5", '.'), Err(NumError::Invalid(_))));
        assert_eq!(parse_number(" -3.5e2 ", '.'), Ok(Value::F64(-350.0)));
        assert_eq!(parse_number("18446744073709551615", '.'), Ok(Value::U64(u64::MAX)));
        assert_eq!(parse_number("-9223372036854775808", '.'), Ok(Value::I64(i64::MIN)));
        assert_eq!(parse_number("TRUE", '.'), Ok(Value::Bool(true)));
    }

    #[test]
    fn text_or_malformed_number() {
        for t in ["Anna", "ERR", "n/a", "v1.2", "12abc", "OK", "Żółw"] {
            assert!(is_text(t, '.'), "{t}");
        }
        for n in ["0.5", "1,5", "1.234,5", "-", "--", "", "nan", "true", "12", "1e5", "1.5e"] {
            assert!(!is_text(n, ','), "{n}");
        }
    }

    #[test]
    fn non_finite_and_garbage() {
        for s in ["nan", "-nan", "NaN", "Infinity", "-Infinity", "inf", "+inf"] {
            assert!(matches!(parse_number(s, '.'), Err(NumError::NonFinite(_))), "{s}");
        }
        assert_eq!(parse_number("1e999", '.'), Err(NumError::NonFinite("1e999".into())));
        // Underflow is refused too, never a plausible 0.
        for s in ["1e-400", "-2.5e-999", "0,1e-400"] {
            assert!(matches!(parse_number(s, if s.contains(',') { ',' } else { '.' }), Err(NumError::Invalid(_))), "{s}");
        }
        assert_eq!(parse_number("0e-400", '.'), Ok(Value::F64(0.0)));
        assert_eq!(parse_number("0.000", '.'), Ok(Value::F64(0.0)));
        assert!(!is_text("1e-400", '.'));
        assert_eq!(parse_number("", '.'), Err(NumError::Empty));
        assert!(matches!(parse_number("12abc", '.'), Err(NumError::Invalid(_))));
        assert!(matches!(parse_number("-", '.'), Err(NumError::Invalid(_))));
    }

    #[test]
    fn floats_beyond_2_pow_53_that_are_not_the_number_written_are_found() {
        for (t, d, loss) in [
            ("100000000000000000001", '.', true),
            ("9007199254740993.0", '.', true),
            ("9007199254740993,0", ',', true),
            ("-9007199254740993.0", '.', true),
            ("1e20", '.', false),
            ("100000000000000000000", '.', false),
            ("9007199254740992.0", '.', false),
            ("0.1", '.', false),
            ("123456.789", '.', false),
        ] {
            let v = parse_number(t, d).unwrap();
            assert_eq!(inexact(t, d, &v), loss, "{t} {v:?}");
        }
        assert_eq!(parse_number("9007199254740993", '.'), Ok(Value::I64(9_007_199_254_740_993)), "exact as I64");
    }
}
