//! RFC 4733 telephone-event payload (section 2.3): DTMF digits and line events carried in RTP
//! as named events rather than tones.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```
//! One RTP packet may carry several 4-byte event blocks (section 2.5.1.5: redundancy).

/// One telephone-event block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (RFC 4733 section 3.2: 0-9 digits, 10 `*`, 11 `#`, 12-15 A-D, 16 flash).
    pub event: u8,
    /// End of the event (the last packets of an event carry E).
    pub end: bool,
    /// Power level, 0 to -63 dBm0, as its absolute value (section 2.3.4); 0-63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (section 2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// The first block of an RTP payload; `None` when shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b = payload.get(..4)?;
        Some(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// Every block of a payload (redundant events first, as sent).
    pub fn parse_all(payload: &[u8]) -> impl Iterator<Item = TelephoneEvent> + '_ {
        payload.chunks_exact(4).filter_map(TelephoneEvent::parse)
    }

    /// The 4-byte block (R, reserved, is sent as 0).
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The DTMF symbol of the event, if it is one (`0-9 * # A-D`).
    pub fn digit(&self) -> Option<char> {
        digit_of(self.event)
    }
}

/// The DTMF symbol of an event code.
pub fn digit_of(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// The event code of a DTMF symbol (case-insensitive letters).
pub fn event_of(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        c @ '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        c @ 'A'..='D' => c as u8 - b'A' + 12,
        _ => return None,
    })
}

/// Flash (hook flash), RFC 4733 section 3.2.
pub const FLASH: u8 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4733 section 2.3 layout, with the values of its example (digit 9, end, -20 dBm0,
    /// 1600 timestamp units = 200 ms at 8 kHz).
    #[test]
    fn layout() {
        let e = TelephoneEvent {
            event: 9,
            end: true,
            volume: 20,
            duration: 1600,
        };
        assert_eq!(e.encode(), [9, 0x80 | 20, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&e.encode()), Some(e));
        assert_eq!(e.digit(), Some('9'));
        // R bit set on the wire is ignored
        assert_eq!(
            TelephoneEvent::parse(&[1, 0x40 | 10, 0, 160])
                .unwrap()
                .volume,
            10
        );
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn digits_both_ways() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(event_of(c), Some(i as u8));
            assert_eq!(digit_of(i as u8), Some(c));
        }
        assert_eq!(event_of('b'), Some(13));
        assert_eq!(event_of('x'), None);
        assert_eq!(digit_of(FLASH), None);
    }

    #[test]
    fn redundant_blocks() {
        let mut p = Vec::new();
        for (ev, end) in [(1u8, true), (2, false)] {
            p.extend_from_slice(
                &TelephoneEvent {
                    event: ev,
                    end,
                    volume: 10,
                    duration: 800,
                }
                .encode(),
            );
        }
        p.push(0xff); // trailing garbage is not a block
        let v: Vec<_> = TelephoneEvent::parse_all(&p).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].digit(), v[0].end, v[1].digit()),
            (Some('1'), true, Some('2'))
        );
    }
}
