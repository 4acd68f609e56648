//! SIP response status codes (RFC 3261 §7.2, §21) and their reason phrases: the one table.

/// A response status code, 100–699 ([`StatusCode::new`] refuses anything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1 to 6 (RFC 3261 §7.2: "the first digit of the Status-Code defines the class").
    pub const fn class(self) -> u16 {
        self.0 / 100
    }

    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// The reason phrase RFC 3261 §21 (and the extensions trunkline speaks) gives the code;
    /// for a code no RFC names, a phrase for its class.
    pub const fn reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            199 => "Early Dialog Terminated",
            200 => "OK",
            202 => "Accepted",
            204 => "No Notification",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            305 => "Use Proxy",
            380 => "Alternative Service",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            412 => "Conditional Request Failed",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            422 => "Session Interval Too Small",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            489 => "Bad Event",
            491 => "Request Pending",
            493 => "Undecipherable",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => match self.0 / 100 {
                1 => "Progress",
                2 => "Success",
                3 => "Redirection",
                4 => "Request Failure",
                5 => "Server Failure",
                _ => "Global Failure",
            },
        }
    }
}

/// The reason phrase of `code` ([`StatusCode::reason`]; "Unknown" outside 100–699).
pub fn reason_phrase(code: u16) -> &'static str {
    match StatusCode::new(code) {
        Some(c) => c.reason(),
        None => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_classes() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(700), None);
        let c = StatusCode::new(486).unwrap();
        assert_eq!((c.as_u16(), c.class(), c.reason()), (486, 4, "Busy Here"));
        assert!(StatusCode::new(183).unwrap().is_provisional());
        assert!(StatusCode::new(202).unwrap().is_success());
        assert_eq!(reason_phrase(499), "Request Failure");
        assert_eq!(reason_phrase(1000), "Unknown");
    }
}
