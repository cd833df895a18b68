//! HTML character references (`&amp;`, `&#8212;`, `&#x2014;`, the named entities of HTML 5 that
//! occur in practice). Decoding is linear in the input: a reference expands to at most one or two
//! characters and nothing is decoded twice.

/// Decode HTML character references (`&amp;`, `&#8212;`, `&#x2014;`, ...).
/// Unknown references are left as they are.
pub(crate) fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_one(after, &mut out) {
            Some(consumed) => rest = &after[consumed..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

pub(crate) enum Decoded {
    Char(char),
    Str(&'static str),
}

impl Decoded {
    pub(crate) fn push_to(&self, out: &mut String) {
        match self {
            Decoded::Char(c) => out.push(*c),
            Decoded::Str(s) => out.push_str(s),
        }
    }
}

/// Decode one reference into `out`; `s` starts right after '&'. Returns
/// the number of bytes consumed (including a trailing ';').
pub(crate) fn decode_one(s: &str, out: &mut String) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (hex, digits_start) = match b.get(1) {
            Some(b'x') | Some(b'X') => (true, 2),
            _ => (false, 1),
        };
        let mut i = digits_start;
        while i < b.len()
            && (if hex { b[i].is_ascii_hexdigit() } else { b[i].is_ascii_digit() })
            && i - digits_start < 8
        {
            i += 1;
        }
        if i == digits_start {
            return None;
        }
        let num = u32::from_str_radix(&s[digits_start..i], if hex { 16 } else { 10 }).ok()?;
        // swallow any remaining digits of an absurdly long number
        while i < b.len() && (if hex { b[i].is_ascii_hexdigit() } else { b[i].is_ascii_digit() }) {
            i += 1;
        }
        let consumed = if b.get(i) == Some(&b';') { i + 1 } else { i };
        let c = match num {
            0x80..=0x9f => windows_1252(num),
            _ => char::from_u32(num).filter(|c| *c != '\0').unwrap_or('\u{fffd}'),
        };
        out.push(c);
        return Some(consumed);
    }
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_alphanumeric() && i < 32 {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let name = &s[..i];
    if b.get(i) == Some(&b';') {
        let d = named_entity(name)?;
        d.push_to(out);
        Some(i + 1)
    } else {
        // Legacy references without ';' (only the common ones).
        match name {
            "amp" | "lt" | "gt" | "quot" | "nbsp" | "copy" | "reg" | "AMP" | "LT" | "GT" => {
                let d = named_entity(name)?;
                d.push_to(out);
                Some(i)
            }
            _ => None,
        }
    }
}

pub(crate) fn windows_1252(n: u32) -> char {
    const MAP: [char; 32] = [
        '€', '\u{fffd}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{fffd}', 'Ž',
        '\u{fffd}', '\u{fffd}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{fffd}', 'ž', 'Ÿ',
    ];
    MAP.get((n as usize).wrapping_sub(0x80)).copied().unwrap_or('\u{fffd}')
}

pub(crate) fn named_entity(name: &str) -> Option<Decoded> {
    // Latin-1 block U+00A0..U+00FF in order.
    const LATIN1: [&str; 96] = [
        "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
        "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
        "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
        "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave",
        "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
        "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc",
        "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring",
        "aelig", "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc",
        "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash",
        "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
    ];
    const GREEK_UPPER: [&str; 25] = [
        "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa",
        "Lambda", "Mu", "Nu", "Xi", "Omicron", "Pi", "Rho", "", "Sigma", "Tau", "Upsilon", "Phi",
        "Chi", "Psi", "Omega",
    ];
    const GREEK_LOWER: [&str; 25] = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigmaf", "sigma", "tau", "upsilon",
        "phi", "chi", "psi", "omega",
    ];
    let c = match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "ensp" | "emsp" | "thinsp" | "emsp13" | "emsp14" | "numsp" | "puncsp" | "hairsp"
        | "MediumSpace" | "NonBreakingSpace" => ' ',
        "zwnj" | "zwj" | "lrm" | "rlm" | "ZeroWidthSpace" | "NoBreak" => return Some(Decoded::Str("")),
        "ndash" => '–',
        "mdash" => '—',
        "horbar" => '―',
        "hyphen" | "dash" => '‐',
        "lsquo" => '‘',
        "rsquo" | "rsquor" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" | "rdquor" => '”',
        "bdquo" => '„',
        "lsaquo" => '‹',
        "rsaquo" => '›',
        "dagger" => '†',
        "Dagger" | "ddagger" => '‡',
        "bull" | "bullet" => '•',
        "hellip" | "mldr" => '…',
        "permil" => '‰',
        "prime" => '′',
        "Prime" => '″',
        "oline" => '‾',
        "frasl" => '⁄',
        "euro" => '€',
        "trade" | "TRADE" => '™',
        "larr" | "leftarrow" => '←',
        "uarr" => '↑',
        "rarr" | "rightarrow" => '→',
        "darr" => '↓',
        "harr" => '↔',
        "lArr" | "Leftarrow" => '⇐',
        "rArr" | "Rightarrow" | "Implies" => '⇒',
        "hArr" | "iff" => '⇔',
        "forall" => '∀',
        "part" => '∂',
        "exist" => '∃',
        "empty" => '∅',
        "nabla" => '∇',
        "isin" => '∈',
        "notin" => '∉',
        "ni" => '∋',
        "prod" => '∏',
        "sum" => '∑',
        "minus" => '−',
        "lowast" => '∗',
        "radic" => '√',
        "prop" => '∝',
        "infin" => '∞',
        "ang" => '∠',
        "and" => '∧',
        "or" => '∨',
        "cap" => '∩',
        "cup" => '∪',
        "int" => '∫',
        "there4" => '∴',
        "sim" => '∼',
        "cong" => '≅',
        "asymp" => '≈',
        "ne" => '≠',
        "equiv" => '≡',
        "le" => '≤',
        "ge" => '≥',
        "sub" => '⊂',
        "sup" => '⊃',
        "nsub" => '⊄',
        "sube" => '⊆',
        "supe" => '⊇',
        "oplus" => '⊕',
        "otimes" => '⊗',
        "perp" => '⊥',
        "sdot" => '⋅',
        "lceil" => '⌈',
        "rceil" => '⌉',
        "lfloor" => '⌊',
        "rfloor" => '⌋',
        "lang" => '⟨',
        "rang" => '⟩',
        "loz" => '◊',
        "spades" => '♠',
        "clubs" => '♣',
        "hearts" => '♥',
        "diams" => '♦',
        "circ" => 'ˆ',
        "tilde" => '˜',
        "OElig" => 'Œ',
        "oelig" => 'œ',
        "Scaron" => 'Š',
        "scaron" => 'š',
        "Yuml" => 'Ÿ',
        "fnof" => 'ƒ',
        "thetasym" => 'ϑ',
        "upsih" => 'ϒ',
        "piv" => 'ϖ',
        "check" | "checkmark" => '✓',
        "star" => '☆',
        "starf" => '★',
        "COPY" => '©',
        "REG" => '®',
        "Tab" => '\t',
        "NewLine" => '\n',
        "lpar" => '(',
        "rpar" => ')',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "lcub" | "lbrace" => '{',
        "rcub" | "rbrace" => '}',
        "colon" => ':',
        "semi" => ';',
        "comma" => ',',
        "period" => '.',
        "excl" => '!',
        "quest" => '?',
        "num" => '#',
        "dollar" => '$',
        "percnt" => '%',
        "ast" | "midast" => '*',
        "plus" => '+',
        "equals" => '=',
        "sol" => '/',
        "bsol" => '\\',
        "verbar" | "vert" | "VerticalLine" => '|',
        "grave" | "DiacriticalGrave" => '`',
        "Hat" => '^',
        "lowbar" | "UnderBar" => '_',
        "commat" => '@',
        _ => {
            if let Some(i) = LATIN1.iter().position(|n| *n == name) {
                return char::from_u32(0xa0 + i as u32).map(Decoded::Char);
            }
            if let Some(i) = GREEK_UPPER.iter().position(|n| !n.is_empty() && *n == name) {
                return char::from_u32(0x391 + i as u32).map(Decoded::Char);
            }
            if let Some(i) = GREEK_LOWER.iter().position(|n| *n == name) {
                return char::from_u32(0x3b1 + i as u32).map(Decoded::Char);
            }
            return None;
        }
    };
    Some(Decoded::Char(c))
}

