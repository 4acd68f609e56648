//! The ng `codec` dictionary of an offer (rtpengine's transcoding flags, as Kamailio's
//! `rtpengine_offer("codec-mask=PCMU codec-transcode=PCMA")` sends them):
//!
//! * `transcode: [X, ...]`: X is added to the offer towards the other side (when the offerer
//!   does not offer it); if the answer picks it, the relay transcodes.
//! * `mask: [Y, ...]`: Y is not offered to the other side, but the offerer may still send it
//!   (the relay transcodes).
//! * `strip: [Y, ...]`: as `mask` here (the offerer's SDP is answered by the relay).
//!
//! Codec names are `PCMU`, `PCMA`, `G722` and `telephone-event` (`all` in `mask`/`strip`:
//! every codec of the offer). With any of these keys the offer to the other side lists only
//! codecs the relay knows: the offerer's known codecs not masked, in its order, then the
//! `transcode` ones (see [`crate::control`]'s codec policy).

use super::Value;
use crate::control::CodecName;
use crate::sdp::Sdp;

fn names<'a>(codec: &'a Value, key: &str) -> Vec<&'a str> {
    codec
        .get(key)
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The policy for the side the offer goes to, from the request's `codec` dictionary; `None`
/// when it has none of the keys above. Unknown codec names in `transcode` are an error.
pub(crate) fn offer_policy(req: &Value, sdp: &[u8]) -> Result<Option<Vec<CodecName>>, String> {
    let Some(codec) = req.get("codec") else {
        return Ok(None);
    };
    let transcode = names(codec, "transcode");
    let mut hidden = names(codec, "mask");
    hidden.extend(names(codec, "strip"));
    if transcode.is_empty() && hidden.is_empty() {
        return Ok(None);
    }
    let all = hidden.iter().any(|n| n.eq_ignore_ascii_case("all"));
    let is_hidden = |c: &CodecName| {
        all || hidden
            .iter()
            .any(|h| CodecName::parse(h).as_ref() == Some(c))
    };
    let mut list: Vec<CodecName> = Vec::new();
    let parsed = Sdp::parse(sdp).map_err(|e| e.to_string())?;
    if let Some(m) = parsed.media().iter().find(|m| m.kind == "audio") {
        for f in &m.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            let name = match m.rtpmaps.iter().find(|r| r.payload_type == pt) {
                Some(r) => CodecName::parse(&r.encoding).filter(|_| r.clock_rate == 8000),
                None => crate::transcode::Codec::of_static(pt).map(CodecName::Known),
            };
            if let Some(n) = name.filter(|n| !is_hidden(n) && !list.contains(n)) {
                list.push(n);
            }
        }
    }
    for t in transcode {
        let n = CodecName::parse(t).ok_or_else(|| format!("Unsupported codec '{t}'"))?;
        if !list.contains(&n) {
            list.push(n);
        }
    }
    Ok(Some(list))
}

/// The SRTP policy `[offerer, other side]` an offer's `transport-protocol` asks for
/// (rtpengine's SRTP bridging, as `rtpengine_offer("RTP/AVP")` sends it): the other side gets
/// that protocol, each leg its own keys, the relay decrypting and encrypting between them.
/// `None` without the key (the SDP crosses as it is).
pub(crate) fn srtp_modes(req: &Value) -> Option<[crate::srtp::negotiate::SrtpMode; 2]> {
    use crate::srtp::negotiate::SrtpMode;
    let proto = req.get("transport-protocol")?.as_str()?;
    let to = if proto.to_ascii_uppercase().contains("SAVP") {
        SrtpMode::Mandatory
    } else if proto.to_ascii_uppercase().starts_with("RTP/AVP") {
        SrtpMode::Off
    } else {
        return None;
    };
    // the offerer keeps what it offered (SRTP when it has crypto, else plain)
    Some([SrtpMode::Optional, to])
}
