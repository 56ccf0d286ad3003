//! DNS wire messages (RFC 1035 §4, EDNS0 RFC 6891, TCP framing RFC 1035 §4.2.2 /
//! RFC 7766), built and decoded with `hickory-proto`, reduced to the few record types
//! a SIP proxy needs.
//!
//! Owns: building a recursive query with a random 16-bit id and an EDNS0 OPT record;
//! checking an answer against the question asked (id, QR bit, question section —
//! RFC 5452 §9.1) so a mismatch is reported, not trusted; turning the answer into
//! owned [`Rdata`] with owner names in canonical form (lower-case, no trailing dot);
//! extracting the negative-caching TTL of RFC 2308 §5 from the authority SOA.
//! No I/O and no clock.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The record types the resolver asks for and caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryType {
    A,
    Aaaa,
    Cname,
    Srv,
    Naptr,
}

impl QueryType {
    /// The hickory record type for this query type.
    pub fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Cname => RecordType::CNAME,
            Self::Srv => RecordType::SRV,
            Self::Naptr => RecordType::NAPTR,
        }
    }
}

/// An SRV record (RFC 2782). `target` is canonical; `"."` target is kept as `""`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// A NAPTR record (RFC 3403 §4.1) as RFC 3263 uses it: flags and services
/// lower-cased, `replacement` canonical (`""` for the root). The regexp field is not
/// kept: RFC 3263 §4.1 uses replacement only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// The data of one resource record of a type the resolver understands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// The canonical target of a CNAME.
    Cname(String),
    Srv(Srv),
    Naptr(Naptr),
}

impl Rdata {
    /// The query type this data answers.
    pub fn query_type(&self) -> QueryType {
        match self {
            Self::A(_) => QueryType::A,
            Self::Aaaa(_) => QueryType::Aaaa,
            Self::Cname(_) => QueryType::Cname,
            Self::Srv(_) => QueryType::Srv,
            Self::Naptr(_) => QueryType::Naptr,
        }
    }
}

/// One record of an answer: owner (canonical), TTL in seconds, data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerRecord {
    pub owner: String,
    pub ttl: u32,
    pub data: Rdata,
}

/// A response that matched the question asked, reduced to what the resolver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// TC bit: the answer did not fit and must be asked again over TCP.
    pub truncated: bool,
    pub rcode: ResponseCode,
    /// Answer-section records of the understood types, in message order.
    pub answers: Vec<AnswerRecord>,
    /// Additional-section records of the understood types (glue for SRV targets).
    pub additionals: Vec<AnswerRecord>,
    /// RFC 2308 §5: `min(SOA TTL, SOA MINIMUM)` of an authority-section SOA, if any.
    pub negative_ttl: Option<u32>,
}

/// Why a received message is not the answer to our question.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// Not decodable as a DNS message at all.
    #[error("undecodable DNS message: {0}")]
    Malformed(String),
    /// Decodable, but its id, QR bit, opcode or question differs from ours: on UDP
    /// this may be a late answer to an earlier query or a spoofing attempt; the
    /// caller keeps waiting (RFC 5452 §9.1).
    #[error("answer does not match the query ({0})")]
    Mismatch(&'static str),
}

/// Errors building a query.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("`{name}` is not a valid DNS name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("cannot encode query for `{name}`: {reason}")]
    Encode { name: String, reason: String },
}

/// Canonical form of a domain name: lower-case ASCII, no trailing dot; root is `""`.
pub fn canonical_name(name: &Name) -> String {
    let mut text = name.to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text.make_ascii_lowercase();
    text
}

/// Parses `name` (absolute or not, it is treated as absolute) into a hickory name.
pub fn parse_name(name: &str) -> Result<Name, QueryError> {
    let mut parsed = Name::from_ascii(name).map_err(|e| QueryError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// A query ready to send: its id and its wire bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireQuery {
    pub id: u16,
    pub bytes: Vec<u8>,
}

/// Builds a recursive query (RD set) for `name`/`qtype` with id `id` and an EDNS0
/// OPT record advertising `edns_payload` bytes. The caller picks `id` at random.
pub fn build_query(
    id: u16,
    name: &Name,
    qtype: QueryType,
    edns_payload: u16,
) -> Result<WireQuery, QueryError> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let mut query = Query::query(name.clone(), qtype.record_type());
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(edns_payload.max(512));
    edns.set_version(0);
    message.set_edns(edns);
    let bytes = message.to_vec().map_err(|e| QueryError::Encode {
        name: name.to_ascii(),
        reason: e.to_string(),
    })?;
    Ok(WireQuery { id, bytes })
}

/// A fresh random query id (RFC 5452 §4.3), from hickory's thread-local CSPRNG.
pub fn random_id() -> u16 {
    Message::query().metadata.id
}

fn convert(record: &Record) -> Option<AnswerRecord> {
    if record.dns_class != DNSClass::IN {
        return None;
    }
    let data = match &record.data {
        RData::A(a) => Rdata::A(a.0),
        RData::AAAA(aaaa) => Rdata::Aaaa(aaaa.0),
        RData::CNAME(cname) => Rdata::Cname(canonical_name(&cname.0)),
        RData::SRV(srv) => Rdata::Srv(Srv {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            target: canonical_name(&srv.target),
        }),
        RData::NAPTR(naptr) => Rdata::Naptr(Naptr {
            order: naptr.order,
            preference: naptr.preference,
            flags: String::from_utf8_lossy(&naptr.flags).to_ascii_lowercase(),
            services: String::from_utf8_lossy(&naptr.services).to_ascii_lowercase(),
            replacement: canonical_name(&naptr.replacement),
        }),
        _ => return None,
    };
    Some(AnswerRecord {
        owner: canonical_name(&record.name),
        ttl: record.ttl,
        data,
    })
}

/// Decodes `bytes` and checks it answers query `id` for `name`/`qtype`.
pub fn parse_response(
    bytes: &[u8],
    id: u16,
    name: &Name,
    qtype: QueryType,
) -> Result<Response, AnswerError> {
    let message = Message::from_vec(bytes).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    let meta = &message.metadata;
    if meta.id != id {
        return Err(AnswerError::Mismatch("id"));
    }
    if meta.message_type != MessageType::Response {
        return Err(AnswerError::Mismatch("not a response"));
    }
    if meta.op_code != OpCode::Query {
        return Err(AnswerError::Mismatch("opcode"));
    }
    // RFC 5452 §9.1: the question must be echoed. A truncated answer may omit
    // nothing but records, so the question is required there too.
    let [question] = message.queries.as_slice() else {
        return Err(AnswerError::Mismatch("question count"));
    };
    if question.query_type() != qtype.record_type()
        || question.query_class() != DNSClass::IN
        || !question.name().eq_ignore_root(name)
    {
        return Err(AnswerError::Mismatch("question"));
    }
    let negative_ttl = message
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        });
    Ok(Response {
        truncated: meta.truncation,
        rcode: meta.response_code,
        answers: message.answers.iter().filter_map(convert).collect(),
        additionals: message.additionals.iter().filter_map(convert).collect(),
        negative_ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};

    fn name(text: &str) -> Name {
        parse_name(text).unwrap()
    }

    fn answer_for(query: &WireQuery) -> Message {
        let asked = Message::from_vec(&query.bytes).unwrap();
        let mut reply = Message::response(asked.metadata.id, OpCode::Query);
        reply.add_queries(asked.queries.iter().cloned());
        reply
    }

    #[test]
    fn query_carries_question_rd_and_edns() {
        let query = build_query(0x1234, &name("Example.com"), QueryType::Srv, 1232).unwrap();
        let decoded = Message::from_vec(&query.bytes).unwrap();
        assert_eq!(decoded.metadata.id, 0x1234);
        assert!(decoded.metadata.recursion_desired);
        assert_eq!(decoded.queries.len(), 1);
        assert_eq!(decoded.queries[0].query_type(), RecordType::SRV);
        assert_eq!(decoded.edns.as_ref().map(Edns::max_payload), Some(1232));
    }

    #[test]
    fn answer_checks_id_and_question() {
        let qname = name("a.example");
        let query = build_query(7, &qname, QueryType::A, 1232).unwrap();
        let mut reply = answer_for(&query);
        reply.add_answer(Record::from_rdata(
            name("A.Example."),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        reply.add_authority(Record::from_rdata(
            name("example"),
            300,
            RData::SOA(SOA::new(
                name("ns.example"),
                name("root.example"),
                1,
                1,
                1,
                1,
                30,
            )),
        ));
        let bytes = reply.to_vec().unwrap();
        let parsed = parse_response(&bytes, 7, &qname, QueryType::A).unwrap();
        assert_eq!(
            parsed.answers,
            vec![AnswerRecord {
                owner: "a.example".into(),
                ttl: 60,
                data: Rdata::A(Ipv4Addr::new(192, 0, 2, 1)),
            }]
        );
        assert_eq!(parsed.negative_ttl, Some(30));
        assert_eq!(
            parse_response(&bytes, 8, &qname, QueryType::A),
            Err(AnswerError::Mismatch("id"))
        );
        assert_eq!(
            parse_response(&bytes, 7, &name("b.example"), QueryType::A),
            Err(AnswerError::Mismatch("question"))
        );
        assert_eq!(
            parse_response(&bytes, 7, &qname, QueryType::Aaaa),
            Err(AnswerError::Mismatch("question"))
        );
        // The query itself (QR clear) is not an answer.
        assert_eq!(
            parse_response(&query.bytes, 7, &qname, QueryType::A),
            Err(AnswerError::Mismatch("not a response"))
        );
        assert!(matches!(
            parse_response(&bytes[..5], 7, &qname, QueryType::A),
            Err(AnswerError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_response(&bytes, 7, &name("a.example"), QueryType::Naptr);
        }

        #[test]
        fn corrupted_answers_never_panic(
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
            cut in proptest::num::usize::ANY,
        ) {
            let qname = name("sip.example");
            let query = build_query(9, &qname, QueryType::Srv, 1232).unwrap();
            let mut reply = answer_for(&query);
            reply.add_answer(Record::from_rdata(
                qname.clone(),
                60,
                RData::SRV(hickory_proto::rr::rdata::SRV::new(1, 2, 5060, name("pbx.example"))),
            ));
            reply.add_additional(Record::from_rdata(name("pbx.example"), 60, RData::A(A::new(192, 0, 2, 1))));
            let mut bytes = reply.to_vec().unwrap();
            for (at, value) in edits {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = parse_response(&bytes, 9, &qname, QueryType::Srv);
        }
    }
}
