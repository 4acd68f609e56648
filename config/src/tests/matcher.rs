use super::*;

// ---------------------------------------------------------------------------------------------
// The fast matcher agrees with the regex crate

#[test]
fn fast_matcher_agrees_with_regex() {
    let patterns = [
        "^1555",
        "^\\+?1(\\d{3})(\\d{7})$",
        "^\\+?1555\\d{7}$",
        ".*",
        "^(.*)$",
        "5$",
        "^$",
        "",
        "^[2-9]\\d{2}[2-9]\\d{6}$",
        "^(00|011)",
        "^0(\\d*)(\\d)$",
        "^(\\d+)(\\d+)$",
        "(\\d)(\\d?)x",
        "^a.c",
        "^[^0-9]+$",
        "^\\*(\\d\\d)#$",
        "^(9)?(\\d{1,3})$",
        "^1{2,}",
        "^[a-c.+]{1,3}",
        "()",
        "^(\\+)?((1)\\d)",
        "\\$$",
        "^\\\\$",
        "[+*#]",
        "^sip:(\\d+)@",
        "^(00|011)(\\d+)$",
        "(?:a|bc)d",
        "^(?P<cc>1|44)(?<rest>\\d*)",
        "(a|ab)(c|bcd)(d*)",
        "^(0|00)0",
        "(|1)5",
        "^(?:\\+|00)(1)",
    ];
    let inputs = [
        "",
        "1",
        "15",
        "1555",
        "15551234567",
        "+15551234567",
        "+1555123456",
        "12125551234",
        "2125551234",
        "0",
        "00",
        "0049301234",
        "01130",
        "abc",
        "a\nc",
        "aXc",
        "*72#",
        "9123",
        "123",
        "11",
        "111",
        "x5",
        "12x",
        "1x",
        "a+b",
        "+1",
        "sip:123@host",
        "$",
        "\\",
        "#",
        "55",
        "ab.c",
        "9",
        "91234",
    ];
    for p in patterns {
        let pat = pattern::Pattern::new(p, false).unwrap();
        let re = regex::Regex::new(p).unwrap();
        for h in inputs {
            let mut spans = Vec::new();
            let got = pat.captures(h, &mut spans, &Default::default());
            let want = re.captures(h);
            assert_eq!(got, want.is_some(), "pattern {p:?} on {h:?}");
            if let Some(w) = want {
                let want_spans: Vec<_> =
                    w.iter().map(|m| m.map(|m| (m.start(), m.end()))).collect();
                assert_eq!(spans, want_spans, "captures of {p:?} on {h:?}");
            }
            assert_eq!(pat.is_match(h), re.is_match(h));
        }
    }
    // and these shapes do take the fast path
    for p in [
        "^1555",
        "^\\+?1(\\d{3})(\\d{7})$",
        ".*",
        "^[2-9]\\d{2}$",
        "^(9?)(\\d{1,3})$",
        "^(00|011)(\\d+)$",
        "^(?:\\+|00)(?P<cc>\\d)",
    ] {
        assert!(pattern::Pattern::new(p, false).unwrap().is_fast(), "{p}");
    }
    for p in [
        "^(00|0\\d)",
        "(?i)abc",
        "^a*?",
        "\\w+",
        "^(a)+",
        "^(a|b)?",
        "(a(b|c))",
    ] {
        assert!(!pattern::Pattern::new(p, false).unwrap().is_fast(), "{p}");
    }
}

#[test]
fn prefixes_are_extracted() {
    let pre = |p: &str| pattern::Pattern::new(p, false).unwrap().prefixes().to_vec();
    assert_eq!(pre("^\\+?1555\\d{7}$"), vec!["+1555", "1555"]);
    assert_eq!(pre("^1555"), vec!["1555"]);
    assert_eq!(pre("^(49)(\\d+)"), vec!["49"]);
    assert_eq!(pre("^(00|011)"), vec!["00", "011"]);
    assert_eq!(pre("^(?:\\+|00)?44"), vec!["+44", "0044", "44"]); // regex-syntax path (quantified group)
    assert_eq!(pre("^(?:\\+|00)44(\\d+)"), vec!["+44", "0044"]); // fast path
    assert!(pattern::Pattern::new("^(?:\\+|00)44(\\d+)", false)
        .unwrap()
        .is_fast());
    assert!(pre("1555").is_empty());
    assert!(pre("^.*").is_empty());
    assert!(pre("^\\d+").is_empty());
    assert!(pre("^a?b?").is_empty());
}
