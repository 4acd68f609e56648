use super::*;

#[test]
fn codecs_on_trunks_and_media_in_order() {
    let src = ACC
        .replace(
            "pbx: { address: 127.0.0.1:15080, transport: udp }",
            "pbx: { address: 127.0.0.1:15080, transport: udp, codecs: [pcma, G722, Telephone-Event] }",
        )
        .replace("  backend: auto\n", "  backend: auto\n  codecs: [PCMU, PCMA]\n");
    let c = from_yaml(&src, "t.yaml").expect("valid");
    let t = c.trunks.get("pbx").unwrap().codecs.clone().unwrap();
    assert_eq!(t.list(), [Codec::Pcma, Codec::G722, Codec::TelephoneEvent]);
    assert_eq!(c.media.codecs.unwrap().list(), [Codec::Pcmu, Codec::Pcma]);
    // absent: no policy
    let c = from_yaml(ACC, "t.yaml").unwrap();
    assert!(c.media.codecs.is_none());
    assert!(c.trunks.get("pbx").unwrap().codecs.is_none());
}

#[test]
fn bad_codec_lists_name_their_line() {
    let with = |list: &str| {
        ACC.replace(
            "pbx: { address: 127.0.0.1:15080, transport: udp }",
            &format!("pbx: {{ address: 127.0.0.1:15080, transport: udp, codecs: {list} }}"),
        )
    };
    let e = err(&with("[PCMA, iLBC]"));
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("unknown codec `iLBC`"), "{e}");
    let e = err(&with("[PCMA, pcma]"));
    assert!(e.message.contains("`PCMA` listed twice"), "{e}");
    let e = err(&with("[telephone-event]"));
    assert!(e.message.contains("at least one audio codec"), "{e}");
    let e = err(&with("[]"));
    assert!(e.message.contains("at least one audio codec"), "{e}");
    let e = err(&with("PCMA"));
    assert_eq!(e.line, 12, "{e}");
}
