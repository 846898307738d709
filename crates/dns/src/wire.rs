//! DNS messages on the wire: request checks, responses that echo EDNS(0), and
//! truncation to the client's UDP payload size (RFC 1035 4.2.1, RFC 6891).

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};

/// The UDP payload size rkube's servers advertise in their OPT records
/// (DNS flag day 2020's recommendation).
pub(crate) const ADVERTISED_UDP_PAYLOAD: u16 = 1232;
/// Classic DNS over UDP without EDNS(0).
pub(crate) const PLAIN_UDP_LIMIT: usize = 512;
/// The most a length-prefixed TCP message can carry.
pub(crate) const TCP_LIMIT: usize = 65535;

/// What to do with a datagram or TCP frame.
pub(crate) enum Parsed {
    /// A well-formed standard query with one question.
    Query(Box<Message>),
    /// Answer at once with this (FORMERR, NOTIMP, BADVERS).
    Reply(Vec<u8>),
    /// Not worth an answer (too short to hold a header, or itself a response).
    Drop,
}

pub(crate) fn parse_request(buf: &[u8]) -> Parsed {
    if buf.len() < 12 {
        return Parsed::Drop;
    }
    // QR bit set: a response, never answered (avoids loops).
    if buf[2] & 0x80 != 0 {
        return Parsed::Drop;
    }
    let msg = match Message::from_vec(buf) {
        Ok(m) => m,
        Err(_) => {
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let op = OpCode::from_u8((buf[2] >> 3) & 0x0f);
            let mut m = Message::error_msg(id, op, ResponseCode::FormErr);
            m.metadata.recursion_desired = buf[2] & 0x01 != 0;
            return encode(&m, PLAIN_UDP_LIMIT).map(Parsed::Reply).unwrap_or(Parsed::Drop);
        }
    };
    if msg.message_type != MessageType::Query {
        return Parsed::Drop;
    }
    let rcode = if msg.op_code != OpCode::Query {
        Some(ResponseCode::NotImp)
    } else if msg.queries.len() != 1 {
        Some(ResponseCode::FormErr)
    } else if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 6.1.3: only version 0 is spoken.
        Some(ResponseCode::BADVERS)
    } else {
        None
    };
    match rcode {
        Some(rcode) => {
            let mut resp = response_to(&msg);
            resp.metadata.response_code = rcode;
            if rcode == ResponseCode::BADVERS && resp.edns.is_none() {
                resp.edns = Some(server_edns(false));
            }
            encode(&resp, udp_limit(&msg)).map(Parsed::Reply).unwrap_or(Parsed::Drop)
        }
        None => Parsed::Query(Box::new(msg)),
    }
}

fn server_edns(dnssec_ok: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(ADVERTISED_UDP_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(dnssec_ok);
    edns
}

/// An empty response to `req`: same id, opcode, RD and CD, the question, RA set,
/// and an OPT record when the request had one.
pub(crate) fn response_to(req: &Message) -> Message {
    let mut resp = Message::response(req.id, req.op_code);
    resp.metadata.recursion_desired = req.recursion_desired;
    resp.metadata.checking_disabled = req.checking_disabled;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    if let Some(edns) = &req.edns {
        resp.edns = Some(server_edns(edns.flags().dnssec_ok));
    }
    resp
}

/// The largest UDP response the client accepts: its EDNS(0) payload size, or 512.
pub(crate) fn udp_limit(req: &Message) -> usize {
    match &req.edns {
        Some(e) => usize::from(e.max_payload()).max(PLAIN_UDP_LIMIT),
        None => PLAIN_UDP_LIMIT,
    }
}

/// Encode `msg`; when it exceeds `limit`, send instead the header with TC set, the
/// question and the OPT record, so the client retries over TCP.
pub(crate) fn encode(msg: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = msg.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let truncated = msg.truncate();
    let mut bytes = truncated.to_vec().ok()?;
    if bytes.len() > limit {
        // Even the question does not fit (a huge OPT?): drop the OPT record.
        let mut bare = truncated;
        bare.edns = None;
        bytes = bare.to_vec().ok()?;
    }
    Some(bytes)
}
