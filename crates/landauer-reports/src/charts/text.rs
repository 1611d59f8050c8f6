//! Text for the figures: numbers (ticks, legends, ratios), words and token texts, and
//! line wrapping by an estimate of the text's width.

/// `text` broken at spaces into lines at most `max` pixels wide (by `px`), at most `lines` of
/// them; what does not fit is cut short with "…".
pub(super) fn wrap(text: &str, max: f64, px: impl Fn(&str) -> f64, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = text.split_whitespace().peekable();
    while words.peek().is_some() && out.len() < lines {
        let mut line = String::new();
        while let Some(&w) = words.peek() {
            let candidate = if line.is_empty() {
                w.to_string()
            } else {
                format!("{line} {w}")
            };
            if px(&candidate) <= max || line.is_empty() {
                line = candidate;
                words.next();
                if px(&line) > max {
                    break;
                }
            } else {
                break;
            }
        }
        out.push(line);
    }
    let cut = words.peek().is_some();
    if let Some(last) = out.last_mut() {
        if cut || px(last) > max {
            // Shorten until the line and its ellipsis fit.
            let mut chars: Vec<char> = last.chars().collect();
            while !chars.is_empty() && px(&format!("{}…", chars.iter().collect::<String>())) > max
            {
                chars.pop();
            }
            *last = format!("{}…", chars.iter().collect::<String>().trim_end());
        }
    }
    out
}

/// 10 to the power `e`, with a superscript exponent: "10⁻²⁰".
pub(super) fn pow10(e: i32) -> String {
    let sup: String = e
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    format!("10{sup}")
}

/// Two significant figures in scientific notation: "2.3e-1".
pub(super) fn sci(v: f64) -> String {
    format!("{v:.1e}")
}

/// A ratio: two significant figures, plainly from 0.01 to 1000, else "4.1e3".
pub(super) fn ratio_text(r: f64) -> String {
    if (0.01..999.5).contains(&r) {
        let digits = 1 - r.log10().floor() as i32;
        let rounded = (r * 10f64.powi(digits)).round() / 10f64.powi(digits);
        fmt_num(rounded)
    } else {
        sci(r)
    }
}

/// A tick or legend number: about three significant figures, no trailing zeros.
pub(super) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a < 1e-12 {
        return "0".to_string();
    }
    if a >= 1e6 {
        return sci(v);
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// "1 token", "2 tokens".
pub(super) fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub(super) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Text safe for an SVG `<text>`: no control characters (which XML forbids), one line.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A token's text for a label: visible whitespace, at most `max` characters.
pub(super) fn token_label(text: &str, max: usize) -> String {
    let shown: String = text
        .trim_matches(' ')
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '⇥',
            '\r' => '␍',
            c if c.is_control() => '�',
            c => c,
        })
        .collect();
    if shown.is_empty() {
        "␣".to_string()
    } else {
        truncate(&shown, max)
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_short() {
        let px = |t: &str| t.chars().count() as f64 * 10.0;
        assert_eq!(wrap("aa bb cc", 50.0, px, 2), ["aa bb", "cc"]);
        assert_eq!(wrap("aa bb cc dd ee ff", 50.0, px, 2), ["aa bb", "cc d…"]);
        assert_eq!(wrap("abcdefghij", 50.0, px, 1), ["abcd…"]);
        assert!(wrap("", 50.0, px, 2).is_empty());
    }

    #[test]
    fn number_helpers() {
        assert_eq!(pow10(-20), "10⁻²⁰");
        assert_eq!(pow10(0), "10⁰");
        assert_eq!(pow10(19), "10¹⁹");
        assert_eq!(sci(0.23), "2.3e-1");
        assert_eq!(
            [1.12, 19.4, 163.0, 0.236, 4100.0, 1.4e16, 0.001].map(ratio_text),
            ["1.1", "19", "160", "0.24", "4.1e3", "1.4e16", "1.0e-3"]
        );
        assert_eq!(fmt_num(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(1234.6), "1235");
        assert_eq!(fmt_num(0.00123), "0.00123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22, 111].map(ordinal),
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]
        );
    }
}
