//! Deterministic recognizers: a pattern finds candidates, a validator (checksum, ranges,
//! lengths) keeps only real ones. A schema type opts in with `"recognizer": "<name>"`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The built-in recognizers, in priority order: when two of them claim overlapping text,
/// the earlier (more specific) one wins (an IP address is not a phone number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recognizer {
    Email,
    Url,
    IpAddress,
    Iban,
    CreditCard,
    UsSsn,
    Date,
    Money,
    Quantity,
    Phone,
    Honorific,
}

/// A validated match in byte offsets of the searched text. Matches have no score of their
/// own: passing a validator (checksum, ranges, lengths) is the evidence, and the entity
/// scores 1.0, so no model guess outranks it and no score threshold un-redacts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub recognizer: Recognizer,
}

pub const ALL: [Recognizer; 11] = [
    Recognizer::Email,
    Recognizer::Url,
    Recognizer::IpAddress,
    Recognizer::Iban,
    Recognizer::CreditCard,
    Recognizer::UsSsn,
    Recognizer::Date,
    Recognizer::Money,
    Recognizer::Quantity,
    Recognizer::Phone,
    Recognizer::Honorific,
];

/// A number as amounts are written: thousands grouped by `,`, `.` or `'`, a decimal part
/// after `.` or `,`.
const NUMBER: &str = r"(?:[0-9]{1,3}(?:[,.'][0-9]{3})+(?:[.,][0-9]+)?|[0-9]+(?:[.,][0-9]+)?)";

/// Amounts of money: [`NUMBER`], or thousands grouped by spaces ("1 200 €"), with a scale
/// ("3.5m", "2 billion"), after a currency sign or ISO code, or before a sign, code or word.
fn money_pattern() -> String {
    let codes = "USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|CNY|RMB|HKD|SGD|INR|KRW|SEK|NOK|DKK|PLN|CZK|HUF|RON|\
        RUB|UAH|TRY|ILS|AED|SAR|ZAR|BRL|MXN|ARS|CLP|COP|NGN|KES|EGP|THB|IDR|MYR|PHP|VND";
    let signs = r"US\$|A\$|C\$|NZ\$|HK\$|S\$|R\$|\$|€|£|¥|₹|₩|₽|₺|₪|₫|₱|฿|₴|₦";
    let words = "dollars?|euros?|yen|yuan|francs?|rupees?|cents?|pence|kronor|kroner|krona|krone";
    let amount = format!(r"(?:[0-9]{{1,3}}(?:[ \u{{a0}}\u{{202f}}][0-9]{{3}})+(?:[.,][0-9]+)?|{NUMBER})");
    let scale = r"(?:\s?(?i:k|m|bn|mn|thousand|million|billion|trillion)\b)?";
    format!(
        r"(?:(?:{signs}|\b(?:{codes}))\s?-?{amount}{scale}|{amount}{scale}\s?(?:{signs}|(?:{codes}|(?i:{words}))\b))"
    )
}

/// Amounts with a unit of measure: [`NUMBER`] or a range of two ("2-3 tablets"), then a
/// unit symbol (as written: "mg", not "MG"; a rate such as "mg/kg"), a unit word, a per
/// cent or a temperature. No spaces in the number ("2 500 mg" is two and 500 mg) and no
/// units that are also common words ("in", "A", "V").
fn quantity_pattern() -> String {
    let symbols = "mcg|µg|μg|ng|mg|kg|g|lbs|lb|oz|mL|ml|dL|dl|cL|cl|L|l|mm|cm|km|m|ft|mi|IU|mmol|mol|mEq|\
        kcal|cal|kJ|kWh|kW|MW|mV|mA|kHz|MHz|GHz|Hz|KB|kB|MB|GB|TB|PB";
    let per = "kg|g|mg|mL|ml|dL|dl|L|l|h|hr|min|s|day|d|m|km";
    let words = "units?|tablets?|tabs?|capsules?|caps?|pills?|puffs?|drops?|sprays?|patch(?:es)?|sachets?|\
        ampoules?|vials?|doses?|teaspoons?|tablespoons?|tsp|tbsp|cups?|lit(?:er|re)s?|millilit(?:er|re)s?|\
        grams?|kilograms?|kilos?|milligrams?|micrograms?|ounces?|(?:kilo|centi|milli)?met(?:er|re)s?|\
        miles?|feet|foot|inches|yards?|gallons?|degrees?";
    format!(
        r"[-−]?{NUMBER}(?:\s?(?:-|–|to)\s?{NUMBER})?\s?(?:(?:{symbols})(?:/(?:{per}))?\b|(?i:{words})\b|%|‰|°\s?[CF]\b|℃|℉)"
    )
}

impl Recognizer {
    pub fn name(self) -> &'static str {
        match self {
            Recognizer::Email => "email",
            Recognizer::Url => "url",
            Recognizer::IpAddress => "ip_address",
            Recognizer::Iban => "iban",
            Recognizer::CreditCard => "credit_card",
            Recognizer::UsSsn => "us_ssn",
            Recognizer::Date => "date",
            Recognizer::Money => "money",
            Recognizer::Quantity => "quantity",
            Recognizer::Phone => "phone",
            Recognizer::Honorific => "honorific",
        }
    }

    /// What it finds and how it validates, in a sentence (the schema editor, the JSON Schema).
    pub fn description(self) -> &'static str {
        match self {
            Recognizer::Email => "e-mail addresses",
            Recognizer::Url => "web addresses: http(s) URLs and domain names under common top-level domains",
            Recognizer::IpAddress => "IPv4 and IPv6 addresses that parse as such",
            Recognizer::Iban => "IBANs of a known country's length whose mod-97 checksum holds",
            Recognizer::CreditCard => {
                "card numbers whose Luhn checksum holds (13 to 19 digits; 12 after a word that names a card)"
            }
            Recognizer::UsSsn => "US social security numbers in valid area, group and serial ranges",
            Recognizer::Date => "dates that exist: 2024-03-05, 5/3/2024, 5 March 2024, March 5, 2024",
            Recognizer::Money => "amounts of money with their currency: $1,200.50, EUR 40, 1 200 €, £3.5m, 25 dollars",
            Recognizer::Quantity => {
                "amounts with a unit of measure: 500 mg, 2.5 ml, 2-3 tablets, 20 units, 5 mg/kg, 12.5%, -4 °C, 3 km, 16 GB"
            }
            Recognizer::Phone => {
                "phone numbers of 7 to 15 digits, grouped as phone numbers are (not dates, times, postcodes or ids)"
            }
            Recognizer::Honorific => "courtesy titles before a name: Mr., Mrs., Dr., Prof. …",
        }
    }

    /// The compiled pattern, built on first use (a cell per recognizer, in [`ALL`]'s order).
    fn pattern(self) -> &'static Regex {
        static CELLS: [OnceLock<Regex>; ALL.len()] = [const { OnceLock::new() }; ALL.len()];
        CELLS[self as usize].get_or_init(|| Regex::new(&self.source()).expect("built-in pattern compiles"))
    }

    /// The pattern's text (money's and quantity's are assembled from their lists).
    fn source(self) -> String {
        let p = match self {
            Recognizer::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}",
            Recognizer::Url => {
                r"(?i)(?:https?://[^\s<>()\x22']+|(?:www\.)?[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*\.(?:com|org|net|edu|gov|io|info|biz|co|uk|de|fr|se|no|dk|fi|nl|be|ch|at|it|es|pt|pl|cz|ru|jp|cn|in|au|ca|us|br|mx|za|eu|me|app|dev|ai)(?:/[^\s<>()\x22']*)?)"
            }
            Recognizer::IpAddress => r"(?i)\b(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})",
            Recognizer::Iban => r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
            // A run of digits in groups; the card is looked for inside it (see `cards_in`).
            Recognizer::CreditCard => r"\b[0-9](?:[ -]?[0-9]){11,}\b",
            Recognizer::UsSsn => r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b",
            Recognizer::Date => {
                r"(?i)\b(?:[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?|[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}|[0-9]{1,2}(?:st|nd|rd|th)? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,? [0-9]{4}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? [0-9]{1,2}(?:st|nd|rd|th)?,? [0-9]{4})\b"
            }
            Recognizer::Money => return money_pattern(),
            Recognizer::Quantity => return quantity_pattern(),
            Recognizer::Phone => {
                r"(?i)(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,5}(?:[ .-]?[0-9]{1,5}){0,6}(?: ?(?:x|ext\.? ?)[0-9]{1,5})?"
            }
            // Courtesy titles before a name; job titles are the model's to find.
            Recognizer::Honorific => {
                r"(?i)\b(?:mrs|mr|ms|miss|mx|dr|prof|sir|dame|rev|herr|frau|mme|mlle|sra|srta)\b\.?"
            }
        };
        p.into()
    }

    /// Every validated match of this recognizer in `text`.
    pub fn find(self, text: &str) -> Vec<Match> {
        let mut out = Vec::new();
        for m in self.pattern().find_iter(text) {
            let candidates = match self {
                Recognizer::Url => vec![trim_url_tail(text, m.start(), m.end())],
                Recognizer::CreditCard => cards_in(text, m.start(), m.end()),
                Recognizer::Iban => iban_in(text, m.start(), m.end()).into_iter().collect(),
                _ => vec![(m.start(), m.end())],
            };
            // Candidates come longest first; a valid one takes its text from the shorter
            // ones that overlap it.
            let mut kept: Vec<Match> = Vec::new();
            for (start, end) in candidates {
                let free = kept.iter().all(|k| end <= k.start || start >= k.end);
                if free && self.validate(&text[start..end], text, start, end) {
                    kept.push(Match {
                        start,
                        end,
                        recognizer: self,
                    });
                }
            }
            kept.sort_by_key(|m| m.start);
            out.extend(kept);
        }
        out
    }

    /// Whether `s`, a span the model gave a type this recognizer fills, could be one. Looser
    /// than the validator (the model may find a form the pattern misses, or a mistyped card
    /// number that still must be redacted), but a 5-digit postcode is no phone number and
    /// "mail" no e-mail address.
    pub fn plausible(self, s: &str) -> bool {
        let digits = s.chars().filter(char::is_ascii_digit).count();
        let alphanumeric = |c: char| c.is_alphanumeric();
        match self {
            Recognizer::Email => s
                .split_once('@')
                .is_some_and(|(user, host)| user.contains(alphanumeric) && host.contains('.')),
            Recognizer::Url => s.contains('.') && !s.contains(char::is_whitespace),
            Recognizer::IpAddress => s.parse::<IpAddr>().is_ok(),
            Recognizer::Iban => {
                let compact = without_spaces(s);
                let b = compact.as_bytes();
                (15..=34).contains(&b.len())
                    && b[..2].iter().all(u8::is_ascii_uppercase)
                    && b[2..4].iter().all(u8::is_ascii_digit)
                    && b.iter().all(u8::is_ascii_alphanumeric)
            }
            // The model may find a 12-digit Maestro number, or a mistyped card.
            Recognizer::CreditCard => CARD_LENGTHS.contains(&digits),
            Recognizer::UsSsn => digits == 9,
            // Weekdays, "last spring", "the 1990s": dates have no shape to check.
            Recognizer::Date => true,
            // An amount has a number, if only in words ("fifty dollars", "two tablets"): a
            // drug's name is no dose.
            Recognizer::Money | Recognizer::Quantity => digits > 0 || has_number_word(s),
            Recognizer::Phone => digits >= 7,
            // The model also fills the type with job titles ("Packager").
            Recognizer::Honorific => true,
        }
    }

    /// Whether `s` (at `start..end` of `text`) is a real instance.
    fn validate(self, s: &str, text: &str, start: usize, end: usize) -> bool {
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
        match self {
            Recognizer::Email => !s.contains("..") && !s.starts_with('.'),
            Recognizer::Url => before != Some('@') && !glued(before) && !text[end..].starts_with('@'),
            Recognizer::IpAddress => {
                if glued(before) || glued(after) || after == Some('.') && s.contains('.') {
                    return false;
                }
                s.parse::<Ipv4Addr>().is_ok()
                    || (s.matches(':').count() >= 2
                        && s.parse::<Ipv6Addr>().is_ok()
                        && s.chars().filter(char::is_ascii_hexdigit).count() >= 4)
            }
            Recognizer::Iban => iban_valid(s),
            Recognizer::CreditCard => {
                let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
                // Twelve digits (some Maestro cards) pass only right after a word that names a
                // card: unannounced, twelve digits are a phone number or an id.
                let length =
                    CARD_DIGITS.contains(&digits.len()) || digits.len() == 12 && card_named_before(text, start);
                !glued(before) && !glued(after) && length && luhn(&digits)
            }
            Recognizer::UsSsn => {
                let d: String = s.chars().filter(char::is_ascii_digit).collect();
                let (area, group, serial) = (&d[0..3], &d[3..5], &d[5..9]);
                let ok = area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000";
                ok && !glued(before) && !glued(after)
            }
            Recognizer::Date => {
                // "03.93.92" in the phone "03.93.92.16.85" is no date: the number goes on.
                let digit_at = |i: Option<char>| i.is_some_and(|c| c.is_ascii_digit());
                let mut rest = text[end..].chars();
                let continues = matches!(after, Some('.' | '/' | '-')) && digit_at(rest.nth(1));
                let mut head = text[..start].chars().rev();
                let continued = matches!(before, Some('.' | '/' | '-')) && digit_at(head.nth(1));
                !glued(before) && !glued(after) && !continues && !continued && numeric_date_fields_valid(s)
            }
            // The pattern ends at a currency word, a unit or a digit: a letter or digit either
            // side means a longer token ("A4", "B12", "5G", "x86").
            Recognizer::Money | Recognizer::Quantity => !glued(before) && !glued(after),
            Recognizer::Phone => {
                if glued(before) || matches!(before, Some('+' | '-' | '.' | '/')) || glued(after) {
                    return false;
                }
                if after == Some(':') {
                    return false; // a time of day follows: this is a timestamp
                }
                // "2024-01-02", "12.03.1999": date-shaped, whichever types the schema asks for.
                if Recognizer::Date.pattern().find(s).is_some_and(|d| d.len() == s.len()) {
                    return false;
                }
                let main = s.split(['x', 'X']).next().unwrap_or(s);
                let digits = main.chars().filter(char::is_ascii_digit).count();
                let grouped = main.contains([' ', '-', '.', '(', '+']);
                let groups: Vec<&str> = main.split([' ', '-', '.']).filter(|g| !g.is_empty()).collect();
                if groups.len() == 2 && !main.contains(['+', '(']) {
                    // "3536 1659 Hoog St", "90010-170": house numbers and postcodes.
                    let name_follows = text[end..].trim_start_matches(' ').starts_with(char::is_uppercase);
                    if name_follows || groups[0].len() > 4 || groups[1].len() < 4 {
                        return false;
                    }
                }
                // Ungrouped runs of 7-9 digits are more often ids or amounts than phones.
                (7..=15).contains(&digits) && (grouped || digits >= 10)
            }
            Recognizer::Honorific => {
                // Only before a name: "Dr. Ann Lee", "mr. lee" (all lower case, with the
                // period), never "I miss you" or "yes sir".
                let Some(name) = text[end..].strip_prefix(' ').and_then(|r| r.chars().next()) else {
                    return false;
                };
                let capital = s.starts_with(char::is_uppercase);
                let fits = if capital {
                    name.is_uppercase()
                } else {
                    s.ends_with('.') && name.is_lowercase()
                };
                !glued(before) && fits
            }
        }
    }
}

/// Whether a word of `s` is an English number word.
fn has_number_word(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
        "million",
        "billion",
        "half",
        "quarter",
        "dozen",
        "single",
        "double",
    ];
    s.split(|c: char| !c.is_alphabetic())
        .any(|w| WORDS.iter().any(|n| n.eq_ignore_ascii_case(w)))
}

/// In an all-numeric date ("12.03.1999", "2024-01-02"), the day and month fields are in range
/// in some order (day-month or month-day); dates written with a month name pass.
fn numeric_date_fields_valid(s: &str) -> bool {
    let date = s.split([' ', 'T']).next().unwrap_or(s);
    let fields: Vec<&str> = date.split(['.', '/', '-']).collect();
    let [a, b, c] = fields[..] else {
        return true;
    };
    let (x, y) = if a.len() == 4 { (b, c) } else { (a, b) }; // year first: month, day
    let (Ok(x), Ok(y)) = (x.parse::<u32>(), y.parse::<u32>()) else {
        return true;
    };
    let day = 1..=31;
    let month = 1..=12;
    (month.contains(&x) && day.contains(&y)) || (day.contains(&x) && month.contains(&y))
}

/// URLs in running text end before trailing punctuation.
fn trim_url_tail(text: &str, start: usize, mut end: usize) -> (usize, usize) {
    while end > start && text[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
        end -= 1;
    }
    (start, end)
}

/// Card numbers have 12 to 19 digits (ISO/IEC 7812); twelve only in some Maestro numbers,
/// taken as a card only after a word that names one (`card_named_before`).
const CARD_LENGTHS: std::ops::RangeInclusive<usize> = 12..=19;
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Whether the word before byte `at` names a card ("cc 5038 0205 3770", "Maestro: …").
fn card_named_before(text: &str, at: usize) -> bool {
    let word = text[..at]
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '#' | '.'))
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_lowercase();
    ["card", "cc", "maestro", "visa", "mastercard", "amex"].contains(&word.as_str())
}

/// The places a run of digit groups (`text[start..end]`) may hold a card number, longest
/// first, for the validator (length, Luhn) to choose from: runs of whole groups with 12 to
/// 19 digits, grouped as cards are printed (compact, fours with a shorter last group, or
/// 4-6-5 / 4-6-4, one kind of separator). So "qty 2 4111 1111 1111 1111" offers the card
/// after the quantity, and "Ref 2024 555-867-5309" (a phone's 3-3-4 groups) offers nothing.
fn cards_in(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut at = start;
    for part in text[start..end].split([' ', '-']) {
        groups.push((at, at + part.len()));
        at += part.len() + 1;
    }
    let printed = |g: &[(usize, usize)]| {
        let lens: Vec<usize> = g.iter().map(|(a, b)| b - a).collect();
        let seps: std::collections::HashSet<&str> = g.windows(2).map(|w| &text[w[0].1..w[1].0]).collect();
        let fours = lens[..lens.len() - 1].iter().all(|&l| l == 4) && lens[lens.len() - 1] <= 4;
        seps.len() <= 1 && (lens.len() == 1 || fours || lens == [4, 6, 5] || lens == [4, 6, 4])
    };
    let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
    for i in 0..groups.len() {
        for j in i..groups.len() {
            let g = &groups[i..=j];
            let digits = g.iter().map(|(a, b)| b - a).sum();
            if CARD_LENGTHS.contains(&digits) && printed(g) {
                candidates.push((digits, g[0].0, g[g.len() - 1].1));
            }
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates.into_iter().map(|(_, a, b)| (a, b)).collect()
}

/// The IBAN at the start of `text[start..end]`: as many characters (spaces aside) as its
/// country's IBANs have, so that a reference number written after it is left out.
fn iban_in(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let s = &text[start..end];
    let &(_, len) = IBAN_LENGTHS.iter().find(|(cc, _)| s.starts_with(cc))?;
    let mut seen = 0;
    for (i, c) in s.char_indices() {
        if !c.is_whitespace() {
            seen += 1;
        }
        if seen == len {
            let cut = start + i + c.len_utf8();
            // The cut must fall between groups, not inside one.
            return (!text[cut..].starts_with(|c: char| c.is_ascii_alphanumeric())).then_some((start, cut));
        }
    }
    None
}

pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// IBANs are written grouped by four or compact.
fn without_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

pub fn iban_valid(s: &str) -> bool {
    let compact = without_spaces(s);
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| compact.starts_with(cc)) else {
        return false;
    };
    if compact.len() != len || !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    // Move the first four characters to the end, letters become 10..35, then mod 97 == 1.
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut rem = 0u32;
    for c in rearranged {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// All matches of `recognizers` in `text`, overlaps resolved by priority, then length.
pub fn find_all(text: &str, recognizers: &[Recognizer]) -> Vec<Match> {
    let mut all: Vec<Match> = recognizers.iter().flat_map(|r| r.find(text)).collect();
    all.sort_by(|a, b| {
        a.recognizer
            .cmp(&b.recognizer)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
    });
    let mut taken = crate::ner::spans::Occupied::default();
    let mut kept: Vec<Match> = Vec::new();
    for m in all {
        if !taken.overlaps(m.start, m.end) {
            taken.insert(m.start, m.end);
            kept.push(m);
        }
    }
    kept.sort_by_key(|m| m.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(r: Recognizer, text: &str) -> Vec<&str> {
        find_all(text, &[r])
            .into_iter()
            .map(|m| &text[m.start..m.end])
            .collect()
    }

    #[test]
    fn a_model_span_must_be_shaped_like_its_recognizers_type() {
        use Recognizer::*;
        for (r, yes, no) in [
            (Email, "Milena.Rossi@rhyta.com", "mail"),
            (Url, "https://www.UEarly.se/", "Public Data Explorer"),
            (IpAddress, "6e40:4041::2eb4", "999.1.1.1"),
            (Iban, "DE89 3704 0044 0532 0130 01", "DE89"),
            (CreditCard, "4111 1111 1111 1112", "4111 1111"),
            (UsSsn, "832 13 6314", "832-13"),
            (Phone, "555-0199 ext. 4", "34736"),
            (Date, "friday morning", ""),
            (Money, "fifty dollars", "free"),
            (Quantity, "two tablets", "atorvastatin"),
        ] {
            assert!(r.plausible(yes), "{yes:?} as {}", r.name());
            assert!(r == Date || !r.plausible(no), "{no:?} as {}", r.name());
        }
    }

    #[test]
    fn email() {
        assert_eq!(
            found(Recognizer::Email, "write to jane.doe+x@mail.example.co.uk, now"),
            ["jane.doe+x@mail.example.co.uk"]
        );
        assert!(found(Recognizer::Email, "not@an address, a@b, x@y.z1").is_empty());
    }

    #[test]
    fn phone_numbers_in_many_formats() {
        for p in [
            "+41 (0)69 979 80 58",
            "(898)666-3621x0135",
            "03.93.92.16.85",
            "9498777106",
            "+1-903-140-4508x769",
            "07700 063 966",
            "450 0840",
        ] {
            assert_eq!(found(Recognizer::Phone, &format!("call {p} today")), [p], "{p}");
        }
        for not in [
            "zip 70651",
            "in 1977",
            "order 1234567",
            "v1.2.3",
            "at 7873 216 Menzies Street",
            "at 3536 1659 Hoog St",
            "zip 90010-170",
            "When: 2005-07-21 18:19:22",
            "on 2024-01-02.",
            "on 12.03.1999",
        ] {
            assert!(found(Recognizer::Phone, not).is_empty(), "{not}");
        }
    }

    #[test]
    fn credit_cards_need_luhn() {
        assert_eq!(
            found(Recognizer::CreditCard, "card 4111 1111 1111 1111."),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found(Recognizer::CreditCard, "card 4735502776853011"),
            ["4735502776853011"]
        );
        assert!(found(Recognizer::CreditCard, "card 4111 1111 1111 1112").is_empty());
        assert!(found(Recognizer::CreditCard, "id 12345678901").is_empty());
    }

    #[test]
    fn a_card_is_found_inside_a_longer_run_of_digits_and_phones_are_no_cards() {
        fn card(text: &str) -> Vec<&str> {
            found(Recognizer::CreditCard, text)
        }
        assert_eq!(card("qty 2 4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
        assert_eq!(card("Expires 12/25 4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
        assert_eq!(card("ref 0044 4111-1111-1111-1111"), ["4111-1111-1111-1111"]);
        assert_eq!(card("amex 3782 822463 10005"), ["3782 822463 10005"]);
        // Twelve digits are a card only after a word that names one; a phone's groups are
        // not a card's.
        assert!(card("+353 21 490 3000").is_empty());
        assert!(card("call 503802053770").is_empty());
        assert_eq!(card("amount for cc 503802053770 on"), ["503802053770"]);
        assert_eq!(card("Maestro: 5038 0205 3770."), ["5038 0205 3770"]);
        assert!(card("Ref 2024 555-867-5309").is_empty());
        assert!(card("Ref 2024 555 867 5309").is_empty());
        assert!(card("4111 1111 1111-1111").is_empty(), "mixed separators");
        // In the full set the phone recognizer has them.
        for text in ["+353 21 490 3000", "Ref 2024 555-867-5309"] {
            let kinds: Vec<Recognizer> = find_all(text, &ALL).iter().map(|m| m.recognizer).collect();
            assert_eq!(kinds, [Recognizer::Phone], "{text}");
        }
    }

    #[test]
    fn an_iban_ends_where_its_country_says() {
        assert_eq!(
            found(Recognizer::Iban, "IBAN DE89 3704 0044 0532 0130 00 1234 ref"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert!(found(Recognizer::Iban, "DE89370400440532013000123").is_empty());
    }

    #[test]
    fn iban_checks_country_length_and_mod_97() {
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("DE89 3704 0044 0532 0130 01"), "bad check digits");
        assert!(!iban_valid("DE89 3704 0044 0532 0130 0"), "wrong length for DE");
        assert!(!iban_valid("ZZ82WEST12345698765432"), "no such country");
        assert_eq!(
            found(Recognizer::Iban, "IBAN: FR1420041010050500013M02606."),
            ["FR1420041010050500013M02606"]
        );
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            found(Recognizer::IpAddress, "from 195.206.132.199 and ::1"),
            ["195.206.132.199", "::1"][..1]
        );
        assert_eq!(
            found(Recognizer::IpAddress, "v6 6e40:4041:c617:e898:c11:40d2:c669:2eb4 ok"),
            ["6e40:4041:c617:e898:c11:40d2:c669:2eb4"]
        );
        assert!(found(Recognizer::IpAddress, "999.1.1.1 and 12:30:45").is_empty());
    }

    #[test]
    fn us_ssn_ranges() {
        assert_eq!(found(Recognizer::UsSsn, "SSN 832-13-6314."), ["832-13-6314"]);
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(found(Recognizer::UsSsn, bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn urls_and_domains() {
        assert_eq!(
            found(Recognizer::Url, "see https://www.UEarly.se/ and bright.com."),
            ["https://www.UEarly.se/", "bright.com"]
        );
        assert!(found(Recognizer::Url, "mail jane@bright.com").is_empty());
    }

    #[test]
    fn honorifics_before_a_name() {
        assert_eq!(
            found(Recognizer::Honorific, "Dear Mrs. Lee, Dr Ann Hill and mr. ortiz"),
            ["Mrs.", "Dr", "mr."]
        );
        assert!(found(Recognizer::Honorific, "I miss you, sir. Mr. or Ms? Ask Mrs.").is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(
            found(Recognizer::Date, "on 2023-02-14, 14 February 2023 or March 3, 2022"),
            ["2023-02-14", "14 February 2023", "March 3, 2022"]
        );
        assert_eq!(
            found(Recognizer::Date, "born 14-01-2025, seen 3/28/2024"),
            ["14-01-2025", "3/28/2024"]
        );
        // Pieces of phone numbers and version strings, and fields out of range.
        assert!(found(Recognizer::Date, "Mobile: 03.93.92.16.85, v1.2.2024-3 or 44.55.2020").is_empty());
    }

    #[test]
    fn non_ascii_digits_and_odd_unicode_never_panic() {
        // Regex `\d` would match these (Unicode digits); the patterns use [0-9].
        for text in [
            "١٢٣-٤٥-٦٧٨٩",
            "１２３-４５-６７８９",
            "call ٠٤١٢ ٣٤٥ ٦٧٨",
            "𝟏𝟐𝟑.𝟒.𝟓.𝟔",
            "e\u{301}@x.fr 😀 DE89\u{200b}3704",
        ] {
            let _ = find_all(text, &ALL);
        }
        assert!(find_all("١٢٣-٤٥-٦٧٨٩", &ALL).is_empty());
    }

    #[test]
    fn all_lists_every_recognizer_in_the_enums_order() {
        // `pattern` keeps each one's regex in the cell of its discriminant.
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }

    #[test]
    fn money_with_its_currency_before_or_after() {
        let text = "Paid $1,200.50 and EUR 40, then 1 200 € (US$3.5m in total, £12 tip, 25 dollars, \
                    CHF 1'000.-, 7,50 € each)";
        assert_eq!(
            found(Recognizer::Money, text),
            [
                "$1,200.50",
                "EUR 40",
                "1 200 €",
                "US$3.5m",
                "£12",
                "25 dollars",
                "CHF 1'000",
                "7,50 €"
            ]
        );
        for not in [
            "a $ sign",
            "USD rates",
            "item A1234USD",
            "in 2019 there were 300 cases",
            "EURO2024",
        ] {
            assert!(found(Recognizer::Money, not).is_empty(), "{not}");
        }
    }

    #[test]
    fn quantities_are_numbers_with_a_unit() {
        let text = "Metformin 500 mg twice daily, paracetamol 1 g (max 4g per day), 2-3 tablets, insulin 20 \
                    units, 2,5 ml, 1,000 mg, 5 mg/kg, 12.5% of 16GB at -4 °C, 3 km away.";
        assert_eq!(
            found(Recognizer::Quantity, text),
            [
                "500 mg",
                "1 g",
                "4g",
                "2-3 tablets",
                "20 units",
                "2,5 ml",
                "1,000 mg",
                "5 mg/kg",
                "12.5%",
                "16GB",
                "-4 °C",
                "3 km"
            ]
        );
        for not in [
            "the 5G network",
            "vitamin B12 daily",
            "take 5 in the morning",
            "A4 paper, room 12, version 2.5",
            "5 million people",
            "in 5 minutes",
            "5 MG",
        ] {
            assert!(found(Recognizer::Quantity, not).is_empty(), "{not}");
        }
        // "2 500 mg" is two and 500 mg; money takes an amount before a quantity does.
        assert_eq!(found(Recognizer::Quantity, "take 2 500 mg tablets"), ["500 mg"]);
        let kinds: Vec<_> = find_all("5 euros and 5 g", &ALL).iter().map(|m| m.recognizer).collect();
        assert_eq!(kinds, [Recognizer::Money, Recognizer::Quantity]);
    }

    #[test]
    fn the_more_specific_recognizer_wins_an_overlap() {
        let text = "ip 48.90.248.226 ssn 474-49-7577";
        let ms = find_all(text, &ALL);
        let kinds: Vec<_> = ms.iter().map(|m| m.recognizer).collect();
        assert_eq!(kinds, [Recognizer::IpAddress, Recognizer::UsSsn]);
    }
}
