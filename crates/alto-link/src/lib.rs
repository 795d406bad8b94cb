//! The agent link's wire protocol and the TLS material it runs on.
//!
//! * [`pb`]: the protobuf messages and the tonic client and server of
//!   `proto/alto/agent/v1/link.proto` (one long-lived bidirectional stream per agent; the
//!   file documents the conversation). Generated at build time by protox, so building needs
//!   no `protoc`.
//! * [`tls`]: a development certificate authority created on the server's first start (so TLS
//!   works out of the box), and loading of supplied certificates for production.
//! * Small conversions shared by both ends ([`outcome_to_str`], [`ms_to_time`], …).
//!
//! **Must never:** contain what the messages *mean* (executing jobs is `alto-agent`'s,
//! dispatching them `alto-server`'s); talk to a database; open a network connection itself;
//! read the clock except to set certificate validity (`tls`); write a private key with
//! permissions other than 0600.

pub mod tls;

/// Generated protobuf messages and gRPC stubs (`alto.agent.v1`).
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("alto.agent.v1");
}

pub use tonic;

/// The metadata key carrying the host credential (`Bearer alto_h_…`).
pub const AUTHORIZATION: &str = "authorization";

/// `pb::Outcome` as the REST API spells it.
pub fn outcome_to_str(o: pb::Outcome) -> Option<&'static str> {
    match o {
        pb::Outcome::Staged => Some("staged"),
        pb::Outcome::Stubbed => Some("stubbed"),
        pb::Outcome::Skipped => Some("skipped"),
        pb::Outcome::Failed => Some("failed"),
        pb::Outcome::Unspecified => None,
    }
}

/// The REST API's spelling of an outcome as `pb::Outcome`.
pub fn outcome_from_str(s: &str) -> pb::Outcome {
    match s {
        "staged" => pb::Outcome::Staged,
        "stubbed" => pb::Outcome::Stubbed,
        "skipped" => pb::Outcome::Skipped,
        "failed" => pb::Outcome::Failed,
        _ => pb::Outcome::Unspecified,
    }
}

/// `pb::JobEnd` as the REST API spells it.
pub fn job_end_to_str(e: pb::JobEnd) -> Option<&'static str> {
    match e {
        pb::JobEnd::Succeeded => Some("succeeded"),
        pb::JobEnd::Failed => Some("failed"),
        pb::JobEnd::Cancelled => Some("cancelled"),
        pb::JobEnd::Unspecified => None,
    }
}

/// The REST API's spelling of a job end as `pb::JobEnd`.
pub fn job_end_from_str(s: &str) -> pb::JobEnd {
    match s {
        "succeeded" => pb::JobEnd::Succeeded,
        "failed" => pb::JobEnd::Failed,
        "cancelled" => pb::JobEnd::Cancelled,
        _ => pb::JobEnd::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in ["staged", "stubbed", "skipped", "failed"] {
            assert_eq!(outcome_to_str(outcome_from_str(s)), Some(s));
        }
        assert_eq!(outcome_from_str("nope"), pb::Outcome::Unspecified);
        for s in ["succeeded", "failed", "cancelled"] {
            assert_eq!(job_end_to_str(job_end_from_str(s)), Some(s));
        }
        assert_eq!(job_end_to_str(pb::JobEnd::Unspecified), None);
    }

    #[test]
    fn messages_encode_and_decode() {
        use prost::Message as _;
        let m = pb::AgentMessage {
            body: Some(pb::agent_message::Body::Request(pb::Request {
                id: 7,
                call: Some(pb::request::Call::Files(pb::FileResults {
                    job_id: "j".into(),
                    results: vec![pb::FileResult {
                        seq: 3,
                        outcome: pb::Outcome::Stubbed as i32,
                        sha256: Some("ab".into()),
                        object_key: None,
                        stored_size: Some(10),
                        error: None,
                    }],
                })),
            })),
        };
        let back = pb::AgentMessage::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, m);
    }
}
