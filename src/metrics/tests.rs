use super::http::{parse_head, reload_allowed};

fn settings(listen: &str, token: Option<&str>) -> config::Metrics {
    config::Metrics {
        listen: listen.parse().unwrap(),
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        reload_token: token.map(str::to_string),
    }
}

#[test]
fn reload_needs_same_origin_and_off_loopback_a_token() {
    let lo = settings("127.0.0.1:9464", None);
    let plain = "POST /reload HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        reload_allowed(&parse_head(plain), &lo, lo.reload_token.as_deref()),
        Ok(())
    );
    for h in [
        "POST /reload HTTP/1.1\r\nOrigin: http://evil.example\r\n\r\n",
        "POST /reload HTTP/1.1\r\norigin: null\r\n\r\n",
        "POST /reload HTTP/1.1\r\nSec-Fetch-Site: cross-site\r\n\r\n",
    ] {
        assert_eq!(
            reload_allowed(&parse_head(h), &lo, lo.reload_token.as_deref()),
            Err(("403 Forbidden", "cross_origin")),
            "{h}"
        );
    }
    let open_no_token = settings("0.0.0.0:9464", None);
    assert_eq!(
        reload_allowed(
            &parse_head(plain),
            &open_no_token,
            open_no_token.reload_token.as_deref()
        ),
        Err(("403 Forbidden", "reload_disabled"))
    );
    let open = settings("0.0.0.0:9464", Some("s3cret-token-0123456789"));
    assert_eq!(
        reload_allowed(&parse_head(plain), &open, open.reload_token.as_deref()),
        Err(("401 Unauthorized", "unauthorized"))
    );
    let wrong = "POST /reload HTTP/1.1\r\nAuthorization: Bearer s3cret-token-0123456780\r\n\r\n";
    assert!(reload_allowed(&parse_head(wrong), &open, open.reload_token.as_deref()).is_err());
    let basic = "POST /reload HTTP/1.1\r\nAuthorization: Basic s3cret-token-0123456789\r\n\r\n";
    assert!(reload_allowed(&parse_head(basic), &open, open.reload_token.as_deref()).is_err());
    let good = "POST /reload HTTP/1.1\r\nauthorization: bearer s3cret-token-0123456789\r\n\r\n";
    assert_eq!(
        reload_allowed(&parse_head(good), &open, open.reload_token.as_deref()),
        Ok(())
    );
    let good_xo = "POST /reload HTTP/1.1\r\nAuthorization: Bearer s3cret-token-0123456789\r\nOrigin: https://a\r\n\r\n";
    assert!(reload_allowed(&parse_head(good_xo), &open, open.reload_token.as_deref()).is_err());
}
