//! Text that comes from WhatsApp (chat names, message bodies) is untrusted.
//!
//! Before it reaches a person it loses its bidirectional and invisible format characters
//! (U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, U+FEFF: a name holding U+202E would show
//! the rest of the line, JID included, reversed), its line breaks and control characters,
//! and it is cut only between grapheme clusters, so an emoji family or a flag is never
//! split in half. A zero-width joiner inside an emoji sequence (👨‍👩‍👧) is part of that
//! emoji and stays; anywhere else it goes. Escaping for a target (Slack mrkdwn, Adaptive
//! Card markdown, HTML) is the channel's job; this module only makes text safe to show.

use std::borrow::Cow;
use unicode_segmentation::UnicodeSegmentation;

/// The ellipsis appended to cut text.
pub const ELLIPSIS: char = '…';

/// A bidirectional control or an invisible format character (docs/spec.md section 5).
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Characters that make up emoji sequences: pictographs, their skin-tone modifiers and
/// the emoji presentation selector. Between two of these a zero-width joiner builds one
/// emoji (a family, a profession), which is not spoofing.
fn is_emoji_part(c: char) -> bool {
    matches!(c,
        '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{2B00}'..='\u{2BFF}'
        | '\u{2190}'..='\u{21FF}' | '\u{2300}'..='\u{23FF}' | '\u{FE0F}' | '\u{00A9}' | '\u{00AE}')
}

/// `text` without hidden characters; borrowed when there is nothing to remove.
pub fn strip(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !is_hidden(c) {
            out.push(c);
            continue;
        }
        // Regional indicators (flags) and skin tones never follow a joiner inside one
        // emoji: a joiner next to them would end up alone at a cut.
        let flag = |c: char| ('\u{1F1E6}'..='\u{1F1FF}').contains(&c);
        let tone = |c: char| ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
        let joins_emoji = c == '\u{200D}'
            && i > 0
            && is_emoji_part(chars[i - 1])
            && !flag(chars[i - 1])
            && chars
                .get(i + 1)
                .is_some_and(|&n| is_emoji_part(n) && !flag(n) && !tone(n));
        if joins_emoji {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters and runs of whitespace become single spaces; leading and trailing
/// whitespace goes. Borrowed when the text is already one clean line.
pub fn one_line(text: &str) -> Cow<'_, str> {
    let clean = !text.starts_with(char::is_whitespace)
        && !text.ends_with(char::is_whitespace)
        && !text.chars().any(char::is_control)
        && !text.contains("  ")
        && !text.chars().any(|c| c.is_whitespace() && c != ' ');
    if clean {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// At most `max` grapheme clusters of `text`, then "…" if anything was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    // Fast path: a grapheme holds at least one char, so few chars means few graphemes.
    if text.chars().nth(max).is_none() {
        return Cow::Borrowed(text);
    }
    match text.grapheme_indices(true).nth(max) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(cut_here(&text[..cut])),
    }
}

/// At most `max` characters in all (a limit counted in chars, like Slack's), the ellipsis
/// included when something was cut; the cut falls between grapheme clusters.
pub fn clip_chars(text: &str, max: usize) -> Cow<'_, str> {
    if text.chars().nth(max).is_none() {
        return Cow::Borrowed(text);
    }
    let budget = max.saturating_sub(1);
    let mut used = 0;
    let mut end = 0;
    for (at, g) in text.grapheme_indices(true) {
        let n = g.chars().count();
        if used + n > budget {
            break;
        }
        used += n;
        end = at + g.len();
    }
    Cow::Owned(cut_here(&text[..end]))
}

/// `kept` and the ellipsis. A joiner left at the end would join nothing (or the
/// ellipsis): it goes.
fn cut_here(kept: &str) -> String {
    let kept = kept.trim_end_matches('\u{200D}');
    let mut out = String::with_capacity(kept.len() + ELLIPSIS.len_utf8());
    out.push_str(kept);
    out.push(ELLIPSIS);
    out
}

/// What every channel shows of an untrusted string: hidden characters stripped, one line,
/// at most `max` graphemes. Borrowed when the text is already all of that.
pub fn display(text: &str, max: usize) -> Cow<'_, str> {
    let stripped = strip(text);
    let line = one_line(&stripped);
    let clipped = clip(&line, max);
    match (&stripped, &line, &clipped) {
        (Cow::Borrowed(_), Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(text),
        _ => Cow::Owned(clipped.into_owned()),
    }
}

/// `text` cut to at most `max` graphemes, hidden characters stripped, line breaks kept
/// (a message preview as stored). Borrowed when nothing changes.
pub fn preview(text: &str, max: usize) -> Cow<'_, str> {
    match strip(text) {
        Cow::Borrowed(b) => clip(b, max),
        Cow::Owned(s) => Cow::Owned(clip(&s, max).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_stripped() {
        let spoof = "Amina \u{202E}su.c@0987654321\u{202C} \u{200B}x\u{FEFF}\u{2066}y\u{2069}";
        assert_eq!(strip(spoof), "Amina su.c@0987654321 xy");
        for c in [
            '\u{200B}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
        ] {
            assert!(is_hidden(c), "{c:?}");
        }
        for c in [
            '\u{200A}', '\u{2010}', '\u{2029}', '\u{202F}', '\u{2065}', '\u{206A}', 'a',
        ] {
            assert!(!is_hidden(c), "{c:?}");
        }
        assert!(matches!(strip("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn a_joiner_inside_an_emoji_family_stays_and_anywhere_else_goes() {
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(strip(family), family);
        assert_eq!(strip("a\u{200D}b"), "ab");
        assert_eq!(strip("👨\u{200D}"), "👨");
        assert_eq!(strip("\u{200D}👨"), "👨");
        assert_eq!(strip("👨\u{200D}x"), "👨x");
    }

    /// Found by the property test: a joiner between an emoji and a flag is no emoji
    /// sequence; kept, it became a grapheme of its own end and a cut left it dangling.
    #[test]
    fn a_joiner_that_joins_no_emoji_is_removed_and_never_left_at_a_cut() {
        let name = "\u{1F466}\u{200D}\u{1F1EA}\u{1F1EC}";
        assert_eq!(strip(name), "\u{1F466}\u{1F1EA}\u{1F1EC}");
        assert_eq!(strip("\u{1F1EC}\u{200D}\u{1F466}"), "\u{1F1EC}\u{1F466}");
        assert_eq!(strip("\u{1F44D}\u{200D}\u{1F3FD}"), "\u{1F44D}\u{1F3FD}");
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert_eq!(strip(family), family, "a family stays whole");
        // Even text that was never stripped never ends a cut with a joiner.
        assert_eq!(
            clip("ab\u{1F466}\u{200D}\u{1F1EA}\u{1F1EC}", 3),
            "ab\u{1F466}…"
        );
        assert_eq!(
            clip_chars("ab\u{1F466}\u{200D}\u{1F1EA}\u{1F1EC}", 5),
            "ab\u{1F466}…"
        );
        assert!(
            display(&format!("{name}{name}{name}"), 2)
                .chars()
                .all(|c| c != '\u{200D}')
        );
    }

    #[test]
    fn clipping_never_splits_a_grapheme() {
        let family = "👨\u{200D}👩\u{200D}👧";
        let flag = "🇪🇬";
        let text = format!("ab{family}{flag}cd");
        assert_eq!(clip(&text, 2), "ab…");
        assert_eq!(clip(&text, 3), format!("ab{family}…"));
        assert_eq!(clip(&text, 4), format!("ab{family}{flag}…"));
        assert_eq!(clip(&text, 6), text);
        assert_eq!(clip(&text, 60), text);
        assert_eq!(clip("e\u{301}e\u{301}", 1), "e\u{301}…");
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("abc", 0), "…");
    }

    #[test]
    fn clipping_by_characters_keeps_graphemes_whole() {
        assert_eq!(clip_chars("🇪🇬🇪🇬🇪🇬", 4), "🇪🇬…");
        assert_eq!(clip_chars("🇪🇬🇪🇬", 4), "🇪🇬🇪🇬");
        assert_eq!(clip_chars("abcdef", 4), "abc…");
        assert_eq!(clip_chars("abcd", 4), "abcd");
        assert_eq!(clip_chars("abc", 0), "…");
    }

    #[test]
    fn one_line_collapses_breaks_and_controls() {
        assert_eq!(one_line(" a\r\nb\t\tc \u{7}d "), "a b c d");
        assert!(matches!(one_line("a b"), Cow::Borrowed("a b")));
        assert_eq!(one_line("a  b"), "a b");
        assert_eq!(one_line("a\u{a0}b"), "a b");
        assert_eq!(display("x\u{202E}y\nz", 2), "xy…");
        assert!(matches!(display("clean", 9), Cow::Borrowed("clean")));
    }

    #[test]
    fn previews_keep_line_breaks_but_not_hidden_characters() {
        assert_eq!(preview("a\n\u{200B}b", 10), "a\nb");
        assert_eq!(preview("abc", 2), "ab…");
        assert!(matches!(preview("abc", 5), Cow::Borrowed("abc")));
        assert_eq!(preview("\u{202E}abc", 2), "ab…");
    }
}
