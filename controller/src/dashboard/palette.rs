//! The state colours of every page, with their contrast ratios (WCAG 2.x
//! relative luminance): each text-on-background pair is at least 4.5:1
//! (AA for normal text), and each bar/line colour at least 3:1 against the
//! page (AA for graphics). A test recomputes every ratio from the hex
//! values, so a colour cannot be changed into an unreadable one.
//!
//! | state | background | text | ratio |
//! |---|---|---|---|
//! | FAILING | `#c00000` | `#ffffff` | 6.5 |
//! | FLAPPING | `#c00000` / `#9a3412` stripes | `#ffffff` | 6.5 / 7.3 |
//! | SUPPRESSED | `#c00000` / `#666666` stripes | `#ffffff` | 6.5 / 5.7 |
//! | STALE | `#ffb000` | `#000000` | 11.5 |
//! | OK | `#d8f5dc` | `#114a1d` | 8.9 |
//! | UNKNOWN | `#dddddd` | `#333333` | 9.3 |
//! | OK, dark mode | `#14532d` | `#dcfce7` | 8.3 |
//! | UNKNOWN, dark mode | `#3f3f46` | `#e4e4e7` | 8.2 |
//! | page text, dark mode | `#18181b` | `#e4e4e7` | 14.0 |
//! | links, dark mode | `#18181b` | `#93c5fd` | 9.8 |
//! | certificate critical | `#b93800` | `#ffffff` | 5.8 |
//! | bar: up / down / STALE on white | `#1e7b34` / `#c00000` / `#b07800` | — | 5.3 / 6.5 / 3.8 |
//!
//! Colour is never the only key: every state cell carries its word
//! (FAILING, STALE, FLAPPING, SUPPRESSED, OK, UNKNOWN) and a glyph drawn
//! before it (✖, ◷, ⇅, ⊘, ✓, ?); status-bar slots differ in height (DOWN full, STALE
//! half, no data a line).

/// (what, background, text): every pair the style sheet draws text with.
pub const TEXT_PAIRS: &[(&str, &str, &str)] = &[
    ("FAILING", "#c00000", "#ffffff"),
    ("FLAPPING stripe", "#9a3412", "#ffffff"),
    ("SUPPRESSED stripe", "#666666", "#ffffff"),
    ("STALE", "#ffb000", "#000000"),
    ("OK", "#d8f5dc", "#114a1d"),
    ("UNKNOWN", "#dddddd", "#333333"),
    ("page", "#f4f4f4", "#111111"),
    ("muted", "#ffffff", "#666666"),
    ("header", "#222222", "#ffffff"),
    ("header meta", "#222222", "#bbbbbb"),
    ("banner", "#b00000", "#ffffff"),
    ("clear", "#1e7b34", "#ffffff"),
    ("certificate critical", "#b93800", "#ffffff"),
    ("certificate error", "#ff7a00", "#000000"),
    ("dark page", "#18181b", "#e4e4e7"),
    ("dark link", "#18181b", "#93c5fd"),
    ("dark table", "#27272a", "#e4e4e7"),
    ("dark OK", "#14532d", "#dcfce7"),
    ("dark UNKNOWN", "#3f3f46", "#e4e4e7"),
    ("dark muted", "#27272a", "#a1a1aa"),
];

/// (what, colour, page background): bar slots and graph lines.
pub const GRAPHIC_PAIRS: &[(&str, &str, &str)] = &[
    ("bar up", "#1e7b34", "#ffffff"),
    ("bar down", "#c00000", "#ffffff"),
    ("bar stale", "#b07800", "#ffffff"),
    ("dark bar up", "#22c55e", "#27272a"),
    ("dark bar down", "#f87171", "#27272a"),
    ("dark bar stale", "#ffb000", "#27272a"),
];

/// WCAG relative luminance of `#rrggbb`.
pub fn luminance(hex: &str) -> f64 {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    let channel = |shift: u32| {
        let c = f64::from((v >> shift) & 0xff) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(16) + 0.7152 * channel(8) + 0.0722 * channel(0)
}

/// Contrast ratio of two colours (1 to 21).
pub fn contrast(a: &str, b: &str) -> f64 {
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_colour_meets_wcag_aa() {
        for (what, bg, fg) in TEXT_PAIRS {
            let r = contrast(bg, fg);
            assert!(r >= 4.5, "{what}: {fg} on {bg} is {r:.2}:1, AA needs 4.5:1");
        }
        for (what, colour, bg) in GRAPHIC_PAIRS {
            let r = contrast(colour, bg);
            assert!(
                r >= 3.0,
                "{what}: {colour} on {bg} is {r:.2}:1, AA needs 3:1"
            );
        }
        assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
    }

    #[test]
    fn the_style_sheet_uses_the_checked_colours() {
        let style = super::super::STYLE;
        for (what, bg, fg) in TEXT_PAIRS.iter().chain(GRAPHIC_PAIRS) {
            for c in [bg, fg] {
                let short = c.len() == 7
                    && c.as_bytes()[1] == c.as_bytes()[2]
                    && c.as_bytes()[3] == c.as_bytes()[4]
                    && c.as_bytes()[5] == c.as_bytes()[6];
                let three = format!("#{}{}{}", &c[1..2], &c[3..4], &c[5..6]);
                assert!(
                    style.contains(*c) || (short && style.contains(&three)),
                    "{what}: {c} is not in the style sheet"
                );
            }
        }
    }
}
